"""Looking inside the Net: each layer's receptive field (from a real forward pass), conv1's filters,
feature maps, and saliency maps (plain autograd).

``feature_maps`` and ``saliency`` take a normalized (N, 1, 28, 28) batch, as ``utils.normalize``
makes it, and return tensors; the ``plot_*`` functions return matplotlib Figures and, given
``save``, also write a PNG. No pyplot global state is used.

    from s5 import explain
    from s5.checkpoint import load_trained_net
    from utils import normalize
    net = load_trained_net("checkpoints/<run-id>.pt")
    print(explain.receptive_field_table(explain.receptive_field(net)))
    x = normalize(image_uint8_28x28)      # (1, 1, 28, 28)
    maps = explain.feature_maps(net, x)   # {"conv1": (1, 32, 26, 26), ..., "conv4": (1, 256, 8, 8)}
    heat = explain.saliency(net, x)       # (1, 1, 28, 28), |d log p(predicted) / d pixel|
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import nn

import utils
from s5.constants import MNIST_MEAN, MNIST_STD
from utils import normalize

CONV_LAYERS = ("conv1", "conv2", "conv3", "conv4")


@dataclass(frozen=True)
class RFRow:
    """One layer of the receptive-field walk (r: receptive field, n: feature-map size, j: jump)."""

    layer: str
    rf_in: int
    n_in: int
    j_in: int
    stride: int
    padding: int
    kernel: int
    rf_out: int
    n_out: int
    j_out: int


def _side(value: int | tuple[int, ...]) -> int:
    """The one side of a square window: 3 or (3, 3) -> 3 (torch's ``_pair`` goes the other way)."""
    values = (value,) if isinstance(value, int) else tuple(value)
    if len(set(values)) != 1:
        raise ValueError(f"receptive_field handles square windows only, got {value}")
    return int(values[0])


class _RecordWindows(torch.overrides.TorchFunctionMode):
    """Records every conv2d / max_pool2d / avg_pool2d call of a forward pass, in order."""

    def __init__(self) -> None:
        super().__init__()
        # kind, weight, k, s, p, dilation
        self.calls: list[tuple[str, object, int, int, int, int]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name == "conv2d":
            given = dict(zip(("input", "weight", "bias", "stride", "padding", "dilation"), args,
                             strict=False)) | kwargs
            if isinstance(given.get("padding", 0), str):
                raise ValueError("receptive_field needs numeric padding, not 'same'/'valid'")
            weight = given["weight"]
            self.calls.append(("conv", weight, _side(weight.shape[-1]),
                               _side(given.get("stride", 1)),
                               _side(given.get("padding", 0)), _side(given.get("dilation", 1))))
        elif name in ("max_pool2d", "avg_pool2d"):
            given = dict(zip(("input", "kernel_size", "stride", "padding"), args,
                             strict=False)) | kwargs
            kernel = _side(given["kernel_size"])
            self.calls.append((name.replace("_pool2d", "pool"), None, kernel,
                               _side(given.get("stride") or kernel),
                               _side(given.get("padding", 0)), _side(given.get("dilation", 1))))
        return func(*args, **kwargs)


def receptive_field(model: nn.Module, input_size: int = 28, in_channels: int = 1) -> list[RFRow]:
    """Walk ``model``'s convolutions and poolings in the order its forward pass runs them.

    Per layer: n_out = floor((n_in + 2p - k_eff) / s) + 1, j_out = j_in * s,
    rf_out = rf_in + (k_eff - 1) * j_in, with k_eff = dilation * (k - 1) + 1.
    """
    names = {id(m.weight): name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    recorder = _RecordWindows()
    was_training = model.training
    model.eval()
    with torch.no_grad(), recorder:
        model(torch.zeros(1, in_channels, input_size, input_size,
                          device=next(model.parameters()).device))
    model.train(was_training)
    rows, rf, n, j = [], 1, input_size, 1
    for kind, weight, k, s, p, d in recorder.calls:
        k_eff = d * (k - 1) + 1
        n_out, rf_out, j_out = (n + 2 * p - k_eff) // s + 1, rf + (k_eff - 1) * j, j * s
        name = names.get(id(weight), kind) if weight is not None else kind
        rows.append(RFRow(name, rf, n, j, s, p, k, rf_out, n_out, j_out))
        rf, n, j = rf_out, n_out, j_out
    return rows


RF_HEADER = ("Layer", "receptive-field_in", "n_in", "j_in", "stride", "padding", "kernel_size",
             "receptive-field_out", "n_out", "j_out")


def receptive_field_table(rows: list[RFRow]) -> str:
    """The receptive-field walk as a markdown table, with the seed README's columns."""
    lines = [" | ".join(RF_HEADER), " | ".join("---" for _ in RF_HEADER)]
    lines += [" | ".join(str(v) for v in asdict(row).values()) for row in rows]
    return "\n".join(lines)



def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _as_batch(x: torch.Tensor) -> torch.Tensor:
    """A uint8 image (28, 28) or batch (N, 28, 28) is normalized; a float one is taken as is."""
    return normalize(x) if x.dtype == torch.uint8 else x.reshape(-1, 1, 28, 28)


def feature_maps(model: nn.Module, x: torch.Tensor,
                 layers: Sequence[str] = CONV_LAYERS) -> dict[str, torch.Tensor]:
    """The activations of each conv layer for a normalized (N, 1, 28, 28) batch, after the ReLU as
    the Net applies it and before pooling: {"conv1": (N, 32, 26, 26), "conv2": (N, 64, 24, 24),
    "conv3": (N, 128, 10, 10), "conv4": (N, 256, 8, 8)}, detached, on the model's device.

    Taken with forward hooks on the conv modules. The Net pools conv2 and conv4 before their ReLU;
    ReLU and max-pooling commute, so relu(conv) here is exactly what the Net pools and passes on.
    """
    modules = dict(model.named_modules())
    maps: dict[str, torch.Tensor] = {}
    handles = []
    for name in layers:
        if name not in modules:
            raise ValueError(f"{type(model).__name__} has no layer {name!r}; "
                             f"it has {sorted(n for n in modules if n)}")
        handles.append(modules[name].register_forward_hook(
            lambda _module, _inputs, output, name=name:
                maps.__setitem__(name, F.relu(output.detach()))))
    try:
        with torch.no_grad():
            model(_as_batch(x).to(_device(model)))
    finally:
        for handle in handles:
            handle.remove()
    return maps


def saliency(model: nn.Module, x: torch.Tensor,
             target: int | Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
    """|d log p(target) / d input| per pixel of a normalized (N, 1, 28, 28) batch, same shape, >= 0.

    ``target`` is one digit for all images, one per image, or None for each image's predicted
    digit. Plain autograd (a "vanilla gradient" saliency map); the model's parameter gradients are
    left untouched, and it also works inside ``torch.inference_mode``/``no_grad``.
    """
    with torch.inference_mode(False), torch.enable_grad():
        inputs = _as_batch(x).to(_device(model)).detach().clone().requires_grad_(True)
        log_probs = model(inputs)
        if target is None:
            chosen = log_probs.argmax(dim=1)
        else:
            chosen = torch.as_tensor(target, device=log_probs.device).long().expand(len(log_probs))
        picked = log_probs.gather(1, chosen.view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(picked, inputs)
    return grad.abs()


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------


def plot_conv1_filters(model: nn.Module, save: str | Path | None = None) -> Figure:
    """conv1's 32 learned 3x3 kernels on one blue-white-red scale (white = 0), with their biases."""
    weights = model.conv1.weight.detach().cpu()[:, 0]  # (32, 3, 3)
    bias = model.conv1.bias.detach().cpu()
    limit = float(weights.abs().max()) or 1.0
    cols = 8
    rows = math.ceil(len(weights) / cols)
    fig = Figure(figsize=(cols * 1.2, rows * 1.35 + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False)
    image = None
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= len(weights):
            ax.axis("off")
            continue
        image = ax.imshow(weights[i].numpy(), cmap="bwr", vmin=-limit, vmax=limit)
        ax.set_title(f"{i}: b={float(bias[i]):+.2f}", fontsize=8)
    fig.suptitle(f"conv1: its {len(weights)} learned 3x3 filters "
                 "(red positive, blue negative weights)")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="weight")
    return utils.save_figure(fig, save)


def _rf_by_layer(rf_rows: Sequence[RFRow]) -> dict[str, int]:
    return {row.layer: row.rf_out for row in rf_rows}


def plot_feature_maps(model: nn.Module, image: torch.Tensor,
                      rf_rows: Sequence[RFRow] | None = None, n_maps: int = 8, title: str = "",
                      save: str | Path | None = None) -> Figure:
    """One image (uint8 (28, 28), or normalized (1, 1, 28, 28)) and, per conv layer, its ``n_maps``
    most active feature maps. Each layer's panel title gives its receptive field, from ``rf_rows``
    (``receptive_field(Net())``; computed from ``model`` when None), and the input image beside
    the maps has a square of that size drawn at its centre.
    """
    x = _as_batch(image)[:1]
    maps = feature_maps(model, x)
    rf = _rf_by_layer(rf_rows if rf_rows is not None else receptive_field(model))
    shown = x[0, 0].cpu() * MNIST_STD + MNIST_MEAN  # back to 0..1 for display
    fig = Figure(figsize=((n_maps + 1) * 1.3, len(maps) * 1.75 + 0.4))
    panels = fig.subfigures(len(maps), 1)
    for panel, (name, act) in zip(panels, maps.items(), strict=True):
        act = act[0].cpu()  # (C, H, W)
        channels, height, width = act.shape
        order = act.mean(dim=(1, 2)).argsort(descending=True)[:n_maps]
        size = rf.get(name)
        rf_text = (f"receptive field {size}x{size} px of the 28x28 input" if size
                   else "receptive field unknown")
        panel.suptitle(f"{name}: {rf_text}; {channels} maps of {height}x{width}, "
                       f"the {len(order)} most active shown", fontsize=10)
        axes = panel.subplots(1, n_maps + 1, squeeze=False)[0]
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0].imshow(shown.numpy(), cmap="gray_r", vmin=0, vmax=1)
        if size:
            start = (28 - size) / 2 - 0.5
            axes[0].add_patch(Rectangle((start, start), size, size, fill=False,
                                        edgecolor="tab:red", linewidth=1.5))
        axes[0].set_xlabel(f"RF {size}x{size}" if size else "", fontsize=8, color="tab:red")
        vmax = float(act[order].max()) or 1.0
        for ax, c in zip(axes[1:], order.tolist(), strict=False):
            ax.imshow(act[c].numpy(), cmap="viridis", vmin=0, vmax=vmax)
            ax.set_xlabel(f"#{c}", fontsize=8)
        for ax in axes[1 + len(order):]:
            ax.axis("off")
    fig.suptitle(title or "What each conv layer sees "
                 "(feature maps after ReLU, shared colour scale per layer)", fontsize=11, y=1.02)
    return utils.save_figure(fig, save)


def plot_saliency(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                  result: utils.EvalResult, n: int = 8, save: str | Path | None = None) -> Figure:
    """Saliency maps of the ``n`` most confident mistakes (``utils.misclassified`` order).

    ``images`` (uint8 (N, 28, 28)) and ``labels`` are the set ``result`` was computed on. Per
    mistake, three rows: the image; the pixels that moved the (wrong) predicted digit's
    log-probability; those that would move the true digit's. Each map is scaled to its maximum.
    """
    idx = utils.misclassified(result)[:n]
    wrong = len(utils.misclassified(result))
    suptitle = (f"Saliency |d log p / d pixel| of the most confident mistakes "
                f"({wrong} of {result.total:,} wrong; showing {len(idx)})")
    if not len(idx):
        fig = Figure(figsize=(6, 1.5))
        fig.text(0.5, 0.5, "no misclassified images: nothing to explain", ha="center", va="center")
        fig.suptitle(suptitle)
        return utils.save_figure(fig, save)
    chosen = images[idx.to(images.device)].cpu()
    true = labels.cpu()[idx]
    x = normalize(chosen)
    pred = result.log_probs[idx].argmax(dim=1)
    prob = result.log_probs[idx].exp().max(dim=1).values
    rows = [("image", None), ("toward the prediction", pred), ("toward the true digit", true)]
    fig = Figure(figsize=(len(idx) * 1.4 + 1.2, 3 * 1.5 + 0.6))
    axes = fig.subplots(3, len(idx), squeeze=False)
    for r, (row_name, target) in enumerate(rows):
        heat = None if target is None else saliency(model, x, target).cpu()
        for k, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if heat is None:
                ax.imshow(chosen[k].numpy(), cmap="gray_r")
                ax.set_title(f"true {int(true[k])} / pred {int(pred[k])}\np={float(prob[k]):.2f}",
                             fontsize=8, color="red")
            else:
                h = heat[k, 0]
                ax.imshow((h / (h.max() + 1e-12)).numpy(), cmap="hot", vmin=0, vmax=1)
            if k == 0:
                ax.set_ylabel(row_name, fontsize=8)
    fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return utils.save_figure(fig, save)
