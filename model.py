"""The Week 5 MNIST network: four 3x3 convolutions, two max-pools, two linear layers."""

import torch
import torch.nn as nn
import torch.nn.functional as F

INPUT_SHAPE = (1, 28, 28)


class Net(nn.Module):
    """conv 1->32->64, max-pool 2, conv 64->128->256, max-pool 2, fc 4096->50->10, log-softmax.

    593,200 trainable parameters. ``forward`` takes a (N, 1, 28, 28) float batch, normalized with
    MNIST's mean 0.1307 and std 0.3081, and returns (N, 10) log-probabilities.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3)  # 28 -> 26, RF 3
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)  # 26 -> 24, RF 5; pool -> 12, RF 6
        self.conv3 = nn.Conv2d(64, 128, kernel_size=3)  # 12 -> 10, RF 10
        self.conv4 = nn.Conv2d(128, 256, kernel_size=3)  # 10 -> 8, RF 14; pool -> 4, RF 16
        self.fc1 = nn.Linear(256 * 4 * 4, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            raise TypeError(f"Net expects a float tensor of shape (N, 1, 28, 28), normalized with "
                            f"MNIST's mean and std, got {got}; for uint8 images (a numpy array: "
                            "torch.from_numpy first) use utils.normalize(images)")
        if x.dtype != self.fc2.weight.dtype and not torch.is_autocast_enabled(x.device.type):
            raise TypeError(f"Net's weights are {self.fc2.weight.dtype} and the input is "
                            f"{x.dtype}: use x.float()")
        if x.dim() != 4 or tuple(x.shape[1:]) != INPUT_SHAPE:
            raise ValueError(
                f"Net expects a batch of shape (N, 1, 28, 28), got {tuple(x.shape)}; "
                "add the batch and channel dimensions with x.view(-1, 1, 28, 28)"
            )
        x = F.relu(self.conv1(x))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = F.relu(self.conv3(x))
        x = F.relu(F.max_pool2d(self.conv4(x), 2))
        x = x.flatten(1)  # flatten, not view: works for channels_last activations too
        x = F.relu(self.fc1(x))
        return F.log_softmax(self.fc2(x), dim=1)
