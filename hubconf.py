"""torch.hub's entry point: the Week 5 Net, untrained or with a checkpoint's weights
(``torch.hub.load(REPO, "net", checkpoint=PATH)``)."""

from __future__ import annotations

import torch

from model import Net
from s5.checkpoint import load_trained_net

# What the modules above import: torch.hub checks each is installed before calling an entry point.
dependencies = ["torch", "numpy"]


def net(checkpoint: str | None = None, device: str = "cpu") -> Net:
    """The Week 5 MNIST Net (593,200 parameters) on ``device``, in eval mode.

    Without ``checkpoint`` it is untrained (fresh weights). With ``checkpoint``, a path on this
    machine to a ``.pt`` written by train.py (or ``torch.save(net.state_dict())``), it carries
    those weights, read by the package's safe loader (``torch.load(weights_only=True)`` after a
    size check, architecture and finite weights verified); a file that fails raises
    ``s5.checkpoint.CheckpointError`` with a one-line reason.

    Input: (N, 1, 28, 28) float images normalized with MNIST's mean 0.1307 and std 0.3081
    (``utils.normalize`` does it for uint8 images); output: (N, 10) log-probabilities.
    """
    if checkpoint is None:
        return Net().to(torch.device(device)).eval()
    return load_trained_net(checkpoint, device=device)
