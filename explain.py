"""Looking inside the Net: the receptive field of every layer, computed from a real forward pass.

    import explain
    from model import Net
    print(explain.receptive_field_table(explain.receptive_field(Net())))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


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
        self.calls: list[tuple[str, object, int, int, int, int]] = []  # kind, weight, k, s, p, dilation

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name == "conv2d":
            given = dict(zip(("input", "weight", "bias", "stride", "padding", "dilation"), args, strict=False)) | kwargs
            if isinstance(given.get("padding", 0), str):
                raise ValueError("receptive_field needs numeric padding, not 'same'/'valid'")
            weight = given["weight"]
            self.calls.append(("conv", weight, _side(weight.shape[-1]), _side(given.get("stride", 1)),
                               _side(given.get("padding", 0)), _side(given.get("dilation", 1))))
        elif name in ("max_pool2d", "avg_pool2d"):
            given = dict(zip(("input", "kernel_size", "stride", "padding"), args, strict=False)) | kwargs
            kernel = _side(given["kernel_size"])
            self.calls.append((name.replace("_pool2d", "pool"), None, kernel, _side(given.get("stride") or kernel),
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
        model(torch.zeros(1, in_channels, input_size, input_size, device=next(model.parameters()).device))
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
