"""muon.py: the orthogonalized update, which weights it trains, its AdamW half, resumable state."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import utils
from model import Net
from s5 import training
from s5.muon import Muon, hidden_matrices, orthogonalize


@pytest.mark.parametrize("shape", [(50, 4096), (256, 1152), (64, 32), (8, 8)])
def test_orthogonalize_keeps_the_directions_and_evens_the_singular_values(shape) -> None:
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    g[0] *= 100  # one direction dominates the raw gradient
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    out = orthogonalize(g)
    assert out.shape == g.shape
    singular = torch.linalg.svdvals(out)
    assert singular.min() > 0.5 and singular.max() < 1.3  # the quintic iteration's band, not 1
    polar = u @ vh  # the exactly orthogonal matrix Muon approximates
    assert F.cosine_similarity(out.flatten(), polar.flatten(), dim=0) > 0.97


def test_orthogonalize_handles_a_zero_gradient() -> None:
    assert torch.equal(orthogonalize(torch.zeros(4, 6)), torch.zeros(4, 6))


def test_muon_trains_the_hidden_weight_matrices_and_adamw_the_rest() -> None:
    net = Net()
    names = {id(p): n for n, p in net.named_parameters()}
    assert [names[id(p)] for p in hidden_matrices(net)] == ["conv2.weight", "conv3.weight",
                                                            "conv4.weight", "fc1.weight"]
    optimizer = training.make_optimizer(net, "muon", lr=1e-3, momentum=0.9, weight_decay=0.01)
    muon_group, adamw_group = optimizer.param_groups
    assert muon_group["muon"] and not adamw_group["muon"] and muon_group["momentum"] == 0.9
    assert len(muon_group["params"]) + len(adamw_group["params"]) == len(list(net.parameters()))


def test_the_adamw_half_steps_exactly_like_torch_adamw() -> None:
    torch.manual_seed(0)
    ours, reference = torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)
    reference.load_state_dict(ours.state_dict())
    # no muon group: all AdamW
    opt = Muon([dict(params=ours.parameters())], lr=0.01, weight_decay=0.1)
    ref_opt = torch.optim.AdamW(reference.parameters(), lr=0.01, weight_decay=0.1)
    for _ in range(5):
        x = torch.randn(7, 5)
        for model, o in ((ours, opt), (reference, ref_opt)):
            o.zero_grad()
            model(x).square().mean().backward()
            o.step()
    for p, q in zip(ours.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def loss_of(net: Net, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.nll_loss(net(x), y)


def test_muon_learns_under_onecycle_and_resumes_exactly() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    net = Net()
    optimizer = training.make_optimizer(net, "muon", lr=1e-2, momentum=0.95, weight_decay=1e-4)
    schedule = utils.make_schedule("onecycle", optimizer, epochs=1, steps_per_epoch=20)
    first = loss_of(net, x, y).item()

    def step(net: Net, optimizer: torch.optim.Optimizer, schedule: utils.Schedule) -> None:
        optimizer.zero_grad()
        loss_of(net, x, y).backward()
        optimizer.step()
        schedule.after_batch()

    for _ in range(10):
        step(net, optimizer, schedule)
    # OneCycle cycles AdamW's betas, not Muon's momentum
    assert optimizer.param_groups[0]["momentum"] == 0.95
    saved = copy.deepcopy((net.state_dict(), optimizer.state_dict(),
                           schedule.scheduler.state_dict()))
    for _ in range(10):
        step(net, optimizer, schedule)
    assert loss_of(net, x, y).item() < first / 2

    resumed = Net()
    resumed.load_state_dict(saved[0])
    resumed_optimizer = training.make_optimizer(resumed, "muon", lr=1e-2, momentum=0.95,
                                                weight_decay=1e-4)
    resumed_schedule = utils.make_schedule("onecycle", resumed_optimizer, epochs=1,
                                           steps_per_epoch=20)
    resumed_optimizer.load_state_dict(saved[1])
    resumed_schedule.scheduler.load_state_dict(saved[2])
    for _ in range(10):
        step(resumed, resumed_optimizer, resumed_schedule)
    for p, q in zip(net.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)
