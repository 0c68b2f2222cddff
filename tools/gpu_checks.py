"""Correctness on a CUDA GPU with the real MNIST: `python -m tools.gpu_checks` (logs in
logs/gpu-checks/).

Each precision trains the fast recipe; then, for bf16 and fp32, a 3-epoch gpu-recipe run is
interrupted with SIGINT in epoch 2, resumed from its checkpoint, and its history compared with an
uninterrupted run's.
"""

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

import torch

from s5 import training
from s5.cli import fail
from s5.recipes import RECIPES

PROG = "python -m tools.gpu_checks"
LOGS, CHECKPOINTS = Path("logs/gpu-checks"), Path("checkpoints/gpu-checks")
PLACES = dict(device="cuda", progress=False, log_dir=LOGS, checkpoint_dir=CHECKPOINTS)


def interrupt_in_epoch_two(history) -> None:
    """``on_epoch``: once epoch 1 is done, send this process SIGINT a moment into epoch 2 (as Ctrl-C
    would); the run saves a checkpoint there."""
    if len(history) == 1:
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start()


def columns(history) -> list[tuple]:
    """A history's rows without the seconds, which differ between any two runs."""
    return [tuple(v for k, v in row.items() if k != "seconds") for row in history.rows()]


def refused_without_cuda(prog: str, doc: str, argv: list[str] | None) -> int | None:
    """A GPU tool's command line (``--help`` only): exit status 2 with one line where torch sees no
    CUDA GPU, else ``None``."""
    argparse.ArgumentParser(prog=prog, description=doc,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    if not torch.cuda.is_available():
        return fail(prog, "needs a CUDA GPU and torch sees none here (on Colab: Runtime → Change "
                    "runtime type → GPU)", 2)
    return None


def main(argv: list[str] | None = None) -> int:
    if (status := refused_without_cuda(PROG, __doc__, argv)) is not None:
        return status
    for amp in ("bf16", "fp16", "off"):
        result = training.train(RECIPES["fast"].replace(amp=amp), name=f"amp-{amp}", **PLACES)
        print(f"amp {amp}: {result.status}, accuracy {result.accuracy}%", flush=True)
    for amp in ("bf16", "off"):
        settings = RECIPES["gpu"].replace(epochs=3, amp=amp)
        full = training.train(settings, name=f"full-{amp}", **PLACES)
        cut = training.train(settings, name=f"cut-{amp}", on_epoch=interrupt_in_epoch_two, **PLACES)
        print(f"resume {amp}: the cut run {cut.status} ({cut.message})", flush=True)
        if cut.status == "interrupted":
            resumed = training.resume(cut.checkpoint, progress=False)  # the same run id and files
            print(f"  resumed: {resumed.status}; history == uninterrupted run's: "
                  f"{columns(resumed.history) == columns(full.history)}")
            for a, b in zip(columns(full.history), columns(resumed.history), strict=False):
                print("   full   ", a, "\n   resumed", b)
    return 0


if __name__ == "__main__":
    sys.exit(main())
