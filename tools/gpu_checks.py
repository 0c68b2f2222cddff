"""Correctness on a CUDA GPU with the real MNIST (about a minute on an H100):

    python -m tools.gpu_checks   # from the repository root; logs in logs/gpu-checks/

--amp bf16, fp16 and off each train one epoch (--recipe fast); then, for bf16 and off, a 3-epoch --recipe gpu run
is interrupted with Ctrl-C (SIGINT) in epoch 2, resumed with the command it printed, and its CSV compared with an
uninterrupted run's (all columns but seconds).
"""
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

LOGS = Path("logs/gpu-checks")


def train(*args, wait=True):
    cmd = [sys.executable, "train.py", "--device", "cuda", "--no-progress", "--log-dir", str(LOGS),
           "--checkpoint-dir", "checkpoints/gpu-checks", *args]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, capture_output=True, text=True)


def rows(path):
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def one(pattern):
    (found,) = LOGS.glob(pattern)
    return found


def main() -> None:
    for amp in ("bf16", "fp16", "off"):
        p = train("--recipe", "fast", "--amp", amp, "--name", f"amp-{amp}")
        print(f"amp {amp}: exit {p.returncode}", *[x for x in p.stdout.splitlines() if "Final" in x or "warm-up" in x],
              p.stderr[-500:], flush=True)
    for amp in ("bf16", "off"):
        base = ["--recipe", "gpu", "--epochs", "3", "--amp", amp]
        train(*base, "--name", f"full-{amp}")
        proc = train(*base, "--name", f"cut-{amp}", wait=False)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            logs = list(LOGS.glob(f"*cut-{amp}.log"))
            if logs and "Epoch 2" in logs[0].read_text():
                time.sleep(0.1)
                break
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGINT)
        out = proc.communicate()[0]
        interrupted = [x for x in out.splitlines() if "Interrupted at" in x]
        log = one(f"*cut-{amp}.log").read_text()
        ckpt = log.split("Checkpoint: ")[1].split(". Continue")[0] if interrupted else None
        print(f"resume {amp}: cut exit {proc.returncode}", interrupted, flush=True)
        if ckpt:
            res = train("--resume", ckpt)  # continues the cut run: the same id and files
            print(f"  resumed exit {res.returncode}", res.stderr[-300:])
            a, b = rows(one(f"*full-{amp}.csv")), rows(one(f"*cut-{amp}.csv"))
            print(f"  resumed CSV == uninterrupted CSV: {a == b}")
            for ra, rb in zip(a, b, strict=False):
                print("   full   ", ra, "\n   resumed", rb)


if __name__ == "__main__":
    main()
