import io
from contextlib import redirect_stdout

import pytest
import torch
from conftest import DEVICES
from torchsummary import summary

from model import Net

# The seed README's table, row for row.
SEED_ROWS = """\
            Conv2d-1           [-1, 32, 26, 26]             320
            Conv2d-2           [-1, 64, 24, 24]          18,496
            Conv2d-3          [-1, 128, 10, 10]          73,856
            Conv2d-4            [-1, 256, 8, 8]         295,168
            Linear-5                   [-1, 50]         204,850
            Linear-6                   [-1, 10]             510
"""


def test_parameter_count() -> None:
    assert sum(p.numel() for p in Net().parameters() if p.requires_grad) == 593_200


def test_torchsummary_prints_the_seed_table() -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        summary(Net(), (1, 28, 28), device="cpu")
    text = out.getvalue()
    assert SEED_ROWS in text
    for line in ("Total params: 593,200", "Trainable params: 593,200", "Non-trainable params: 0",
                 "Forward/backward pass size (MB): 0.67", "Params size (MB): 2.26",
                 "Estimated Total Size (MB): 2.94"):
        assert line in text


def test_forward_returns_log_probabilities() -> None:
    out = Net()(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, 10)
    torch.testing.assert_close(out.exp().sum(dim=1), torch.ones(3))


@pytest.mark.parametrize("device", DEVICES)
def test_channels_last_gives_the_same_output(device) -> None:
    torch.manual_seed(0)
    net, x = Net().to(device), torch.randn(4, 1, 28, 28, device=device)
    expected = net(x)
    net = net.to(memory_format=torch.channels_last)
    # CUDA convolutions may use TF32 (10-bit mantissa) in fp32: a looser tolerance there
    tol = dict(atol=1e-5, rtol=1e-4) if device == "cpu" else dict(atol=5e-3, rtol=5e-3)
    torch.testing.assert_close(net(x.contiguous(memory_format=torch.channels_last)), expected,
                               **tol)


@pytest.mark.parametrize("shape", [(28, 28), (1, 28, 28), (2, 3, 28, 28), (2, 1, 32, 32), (2, 784)])
def test_wrong_input_shape_is_a_value_error_naming_the_expected_shape(
        shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        Net()(torch.zeros(shape))


def test_wrong_inputs_say_what_net_expects() -> None:
    import numpy as np

    net = Net()
    for bad, gist in ((np.zeros((2, 1, 28, 28), np.float32), "got ndarray"),
                      ([[0.0] * 28] * 28, "got list"),
                      (torch.zeros(2, 1, 28, 28, dtype=torch.uint8), "got torch.uint8"),
                      (torch.zeros(2, 1, 28, 28, dtype=torch.float64), "use x.float()")):
        with pytest.raises(TypeError, match=gist) as info:
            net(bad)
        assert "normalize" in str(info.value) or "float" in str(info.value)
