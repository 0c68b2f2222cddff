"""Muon (MomentUm Orthogonalized by Newton-Schulz) for hidden weight matrices, AdamW for the rest.

Muon (Keller Jordan, 2024; https://kellerjordan.github.io/posts/muon/) replaces a weight matrix's
Nesterov momentum by the nearest semi-orthogonal matrix before the step, so directions a raw
gradient barely moves learn as fast as the common ones. A conv filter bank (out, in, kh, kw) is the
(out, in*kh*kw) matrix it multiplies with; input and output layers and biases keep AdamW, as
Muon's authors recommend. The step is scaled by 0.2 * sqrt(max(rows, cols)) (Moonshot AI, 2025) so
it moves a weight about as much as AdamW would: one learning rate and weight decay serve both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn as nn

# Quintic Newton-Schulz coefficients from Muon's reference implementation: five steps push every
# singular value into about [0.7, 1.2], as orthogonal as the update needs to be.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5


def orthogonalize(g: torch.Tensor, steps: int = NS_STEPS) -> torch.Tensor:
    """``g`` with its singular values pushed towards 1 (vectors kept), by Newton-Schulz."""
    a, b, c = NS_COEFFICIENTS
    x = g / (g.norm() + 1e-7)  # singular values now <= 1, where the iteration converges
    wide = x.shape[0] <= x.shape[1]
    x = x if wide else x.T  # x @ x.T is then the smaller Gram matrix
    for _ in range(steps):
        gram = x @ x.T
        # a x + (b G + c G G) x
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x if wide else x.T


def hidden_matrices(model: nn.Module) -> list[nn.Parameter]:
    """The weights Muon trains: every 2+ dimensional weight but the first (input) and last."""
    weights = [p for p in model.parameters() if p.ndim >= 2]
    return weights[1:-1]


class Muon(torch.optim.Optimizer):
    """Muon for the parameter groups marked ``muon=True``, AdamW for the others.

    Every group has ``lr`` and ``weight_decay`` (decoupled, as AdamW's); Muon groups use
    ``momentum`` (Nesterov), AdamW groups ``betas`` and ``eps``. OneCycleLR cycles ``betas`` and
    leaves ``momentum`` alone."""

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.95,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, betas=betas, eps=eps,
                                      weight_decay=weight_decay, muon=False))

    @classmethod
    def for_model(cls, model: nn.Module, **settings: float) -> Muon:
        """Muon on ``hidden_matrices(model)``, AdamW on the rest."""
        hidden = {id(p) for p in hidden_matrices(model)}
        return cls([dict(params=[p for p in model.parameters() if id(p) in hidden], muon=True),
                    dict(params=[p for p in model.parameters() if id(p) not in hidden])],
                   **settings)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, decay = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                p.mul_(1 - lr * decay)
                if group["muon"]:
                    mu = group["momentum"]
                    if not state:
                        state["momentum_buffer"] = torch.zeros_like(p)
                    buffer = state["momentum_buffer"].lerp_(p.grad, 1 - mu)
                    # Nesterov: a step past the average
                    update = orthogonalize(p.grad.lerp(buffer, mu).flatten(1))
                    p.add_(update.view_as(p), alpha=-lr * 0.2 * max(update.shape) ** 0.5)
                else:
                    beta1, beta2 = group["betas"]
                    if not state:
                        state.update(step=0, exp_avg=torch.zeros_like(p),
                                     exp_avg_sq=torch.zeros_like(p))
                    state["step"] += 1
                    state["exp_avg"].lerp_(p.grad, 1 - beta1)
                    state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                    denom = ((state["exp_avg_sq"] / (1 - beta2 ** state["step"])).sqrt_()
                             .add_(group["eps"]))
                    p.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - beta1 ** state["step"]))
        return loss
