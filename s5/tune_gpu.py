"""The validation-split grid the GPU recipes were chosen on (needs a CUDA GPU; about 2 minutes on an H100).

    python -m s5.tune_gpu     # from the repository root; each run is logged in logs/tuning/<run-id>.log/.csv/.json

Every run trains on the first 50,000 training images and is scored on the last 10,000 (--val 10000); the test set
is not touched. The recipes in s5/training.py (gpu: 5 epochs, batch 512, lr 0.008; gpu-fast: 1 epoch, batch 256,
lr 0.012) are the candidates with the best median validation accuracy over the 3 seeds, for a 5-epoch and a
one-epoch budget.
"""
import time

import utils
from s5 import training as T


def main() -> None:
    # the recipes as they stood during the grid; each candidate names its own flags, so the logs describe themselves
    common = ["--val", "10000", "--device", "cuda", "--no-save-model", "--no-progress", "--log-dir", "logs/tuning"]
    plan = []
    for seed in (1, 2, 3):
        for lr in (0.004, 0.006, 0.008, 0.01):
            plan.append(["--recipe", "gpu", "--lr", str(lr), "--seed", str(seed),
                         "--name", f"gpu-e5-b512-lr{lr}-s{seed}"])
        for lr in (0.006, 0.008, 0.01, 0.015):
            plan.append(["--recipe", "gpu-fast", "--epochs", "2", "--batch-size", "512", "--lr", str(lr), "--seed",
                         str(seed), "--name", f"gpufast-e2-b512-lr{lr}-s{seed}"])
        for lr in (0.01, 0.015, 0.02):
            plan.append(["--recipe", "gpu-fast", "--epochs", "3", "--batch-size", "1024", "--lr", str(lr), "--seed",
                         str(seed), "--name", f"gpufast-e3-b1024-lr{lr}-s{seed}"])
        for lr in (0.008, 0.012):
            plan.append(["--recipe", "gpu-fast", "--epochs", "1", "--batch-size", "256", "--lr", str(lr), "--seed",
                         str(seed), "--name", f"gpufast-e1-b256-lr{lr}-s{seed}"])
    for argv in plan:
        t0 = time.perf_counter()
        _, files = T.run([*common, *argv], kind="tuning")
        h = utils.load_history(files.csv)
        accuracies, seconds = " ".join(f"{a:.2f}" for a in h.eval_acc), " ".join(f"{x:.2f}" for x in h.seconds)
        print(f"{argv[-1]:34s} acc {accuracies} | s {seconds} | wall {time.perf_counter() - t0:.1f}", flush=True)


if __name__ == "__main__":
    main()
