"""Where a GPU training step's time goes: torch.profiler over 48 steps of --recipe gpu (needs a CUDA
GPU).

    python -m tools.profile_gpu_step   # prints the top kernels and host-side calls

Compare "Self CUDA time total" (what the GPU computes) with the unprofiled wall time printed
last: the gap is the host launching kernels (each cudaLaunchKernel costs microseconds; a step
launches about a hundred).
"""
import sys
import time
from dataclasses import asdict

import torch
from torch.profiler import ProfilerActivity, profile

import utils
from model import Net
from s5 import training as T
from s5.cli import fail
from s5.mnist import MNIST_MD5, MnistError, load_mnist
from s5.recipes import RECIPES
from tools.gpu_checks import refused_without_cuda

PROG = "python -m tools.profile_gpu_step"


def main(argv: list[str] | None = None) -> int:
    if (status := refused_without_cuda(PROG, __doc__, argv)) is not None:
        return status
    dev = torch.device("cuda")
    try:
        data = load_mnist("data", dev, md5s=MNIST_MD5, fetch=False, log=print)
    except MnistError as exc:
        return fail(PROG, exc, 2)
    r = RECIPES["gpu"]
    bs = r.batch_size
    model = Net().to(dev, memory_format=torch.channels_last)
    opt = T.make_optimizer(model, "adamw", lr=r.lr, weight_decay=r.weight_decay)
    augment = utils.Augment.from_settings(asdict(r))
    n, chunk = bs * 48, T.augment_chunk(dev, bs)
    loader = utils.DeviceLoader(data.train_images[:n], data.train_labels[:n], bs, shuffle=True,
                                augment=augment, seed=1, chunk=chunk)
    schedule = utils.make_schedule("onecycle", opt, epochs=3, steps_per_epoch=len(loader))
    step = dict(schedule=schedule, amp_dtype=torch.bfloat16, label_smoothing=0.1, progress=False)
    utils.train(model, loader, opt, epoch=1, **step)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
        utils.train(model, loader, opt, epoch=2, **step)
        torch.cuda.synchronize()
    ka = p.key_averages()
    print(ka.table(sort_by="cuda_time_total", row_limit=12))
    print(ka.table(sort_by="self_cpu_time_total", row_limit=12))
    torch.cuda.synchronize()
    t = time.perf_counter()
    utils.train(model, loader, opt, epoch=3, **step)
    torch.cuda.synchronize()
    print(f"48 steps of bs {bs} unprofiled: {time.perf_counter() - t:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
