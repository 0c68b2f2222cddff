"""explain.py: feature maps, saliency and the pictures, on a random Net and tiny synthetic data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure

import utils
from model import Net
from s5 import explain, mnist


@pytest.fixture(scope="module")
def net() -> Net:
    torch.manual_seed(0)
    return Net().eval()


@pytest.fixture
def evaluated(net: Net,
              tiny_mnist: tuple[Path, dict[str, str]]) -> tuple[mnist.MnistData, utils.EvalResult]:
    data = mnist.load_mnist(tiny_mnist[0], md5s=None, fetch=False, log=lambda _: None)
    return data, utils.test(net, utils.DeviceLoader(data.test_images, data.test_labels, 64))


def one_image(seed: int = 0) -> torch.Tensor:
    return utils.normalize(torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8,
                                         generator=torch.Generator().manual_seed(seed)))


def test_feature_maps_shapes_and_relu(net: Net) -> None:
    maps = explain.feature_maps(net, one_image())
    assert list(maps) == ["conv1", "conv2", "conv3", "conv4"]
    assert {k: tuple(v.shape) for k, v in maps.items()} == {
        "conv1": (1, 32, 26, 26), "conv2": (1, 64, 24, 24), "conv3": (1, 128, 10, 10),
        "conv4": (1, 256, 8, 8)}
    assert all(float(v.min()) >= 0 and not v.requires_grad for v in maps.values())
    assert all(not m._forward_hooks for m in net.modules())  # every hook removed again


def test_feature_maps_are_what_the_net_computes(net: Net) -> None:
    x = torch.cat([one_image(1), one_image(2), one_image(3)])
    maps = explain.feature_maps(net, x)
    assert maps["conv1"].shape == (3, 32, 26, 26)
    with torch.no_grad():
        conv1 = torch.relu(net.conv1(x))
        conv2 = torch.relu(torch.nn.functional.max_pool2d(net.conv2(conv1), 2))
        conv3 = torch.relu(net.conv3(conv2))
    torch.testing.assert_close(maps["conv1"], conv1)
    # pooling after ReLU
    torch.testing.assert_close(torch.nn.functional.max_pool2d(maps["conv2"], 2), conv2)
    torch.testing.assert_close(maps["conv3"], conv3)
    # a uint8 image is normalized first
    raw = torch.randint(0, 256, (28, 28), dtype=torch.uint8)
    torch.testing.assert_close(explain.feature_maps(net, raw)["conv4"],
                               explain.feature_maps(net, utils.normalize(raw))["conv4"])


def test_saliency_shape_sign_and_gradient(net: Net) -> None:
    x = one_image()
    heat = explain.saliency(net, x)
    assert heat.shape == (1, 1, 28, 28) and float(heat.min()) >= 0 and float(heat.max()) > 0
    assert all(p.grad is None for p in net.parameters())  # parameter gradients are left alone
    predicted = int(net(x).argmax())
    torch.testing.assert_close(heat, explain.saliency(net, x, predicted))
    # it is |d log p / d x|: compare with a finite difference at the most salient pixel
    i = int(heat.flatten().argmax())
    eps = 1e-3
    bumped = x.clone().flatten()
    bumped[i] += eps
    with torch.no_grad():
        slope = (net(bumped.view_as(x))[0, predicted] - net(x)[0, predicted]) / eps
    assert (abs(abs(float(slope)) - float(heat.flatten()[i]))
            < 0.05 * float(heat.flatten()[i]) + 1e-3)


def test_saliency_batches_targets_and_inference_mode(net: Net) -> None:
    x = torch.cat([one_image(4), one_image(5)])
    with torch.inference_mode():
        heat = explain.saliency(net, x, target=[3, 7])
    assert heat.shape == (2, 1, 28, 28) and float(heat.min()) >= 0
    torch.testing.assert_close(heat[1:], explain.saliency(net, x[1:], 7))


def test_plots_return_figures_and_write_pngs(net: Net, evaluated, tmp_path: Path) -> None:
    data, result = evaluated
    fig = explain.plot_conv1_filters(net, save=tmp_path / "filters.png")
    assert isinstance(fig, Figure) and len([ax for ax in fig.axes if ax.images]) == 32
    rows = explain.receptive_field(Net())
    fig = explain.plot_feature_maps(net, data.test_images[0], rows, save=tmp_path / "maps.png")
    titles = " | ".join(text.get_text() for sub in fig.subfigs for text in sub.texts)
    for layer, size in (("conv1", 3), ("conv2", 5), ("conv3", 10), ("conv4", 14)):
        assert f"{layer}: receptive field {size}x{size} px" in titles
    assert len(utils.misclassified(result)) > 0  # an untrained Net: plenty of mistakes to explain
    fig = explain.plot_saliency(net, data.test_images, data.test_labels, result, n=5,
                                save=tmp_path / "sal.png")
    assert isinstance(fig, Figure) and len([ax for ax in fig.axes if ax.images]) == 15
    first = int(utils.misclassified(result)[0])
    assert fig.axes[0].get_title().startswith(f"true {int(data.test_labels[first])} / pred ")
    for name in ("filters.png", "maps.png", "sal.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")


def test_plot_saliency_without_mistakes(net: Net, evaluated) -> None:
    data, result = evaluated
    perfect = utils.EvalResult(
        0.0, result.total, result.total,
        torch.nn.functional.one_hot(result.targets, 10).float().add(1e-6).log(), result.targets)
    assert isinstance(explain.plot_saliency(net, data.test_images, data.test_labels, perfect),
                      Figure)
