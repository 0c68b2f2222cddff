"""Receptive fields, per-class numbers, plots (written as PNG), re-plotting from a run's CSV."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import synthetic_digits
from torch import nn

import utils
from model import Net
from s5 import explain

# The seed README's hand-made table, row for row (layer, RF in, n in, j in, stride, padding, kernel,
# RF out, n out, j out).
SEED_RF = [
    ("conv1", 1, 28, 1, 1, 0, 3, 3, 26, 1),
    ("conv2", 3, 26, 1, 1, 0, 3, 5, 24, 1),
    ("maxpool", 5, 24, 1, 2, 0, 2, 6, 12, 2),
    ("conv3", 6, 12, 2, 1, 0, 3, 10, 10, 2),
    ("conv4", 10, 10, 2, 1, 0, 3, 14, 8, 2),
    ("maxpool", 14, 8, 2, 2, 0, 2, 16, 4, 4),
]


def test_receptive_field_of_net_equals_the_seed_table() -> None:
    rows = explain.receptive_field(Net())
    assert [tuple(vars(r).values()) for r in rows] == SEED_RF
    table = explain.receptive_field_table(rows)
    assert table.splitlines()[2] == "conv1 | 1 | 28 | 1 | 1 | 0 | 3 | 3 | 26 | 1"
    assert table.splitlines()[-1] == "maxpool | 14 | 8 | 2 | 2 | 0 | 2 | 16 | 4 | 4"


class Other(nn.Module):
    """Strided, padded, dilated convolutions and both pool kinds, as modules and as functions."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 5, stride=2, padding=2)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.dilated = nn.Conv2d(8, 8, 3, dilation=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(self.dilated(self.pool(self.stem(x))), 2)


def test_receptive_field_of_a_different_net() -> None:
    rows = [tuple(vars(r).values()) for r in explain.receptive_field(Other())]
    assert rows == [  # worked by hand with n_out = (n + 2p - k_eff) // s + 1, rf += (k_eff - 1) * j, j *= s
        ("stem", 1, 28, 1, 2, 2, 5, 5, 14, 2),
        ("maxpool", 5, 14, 2, 2, 1, 3, 9, 7, 4),
        ("dilated", 9, 7, 4, 1, 0, 3, 25, 3, 4),
        ("avgpool", 25, 3, 4, 2, 0, 2, 29, 1, 8),
    ]


def fake_result(n: int = 200, wrong: int = 7) -> utils.EvalResult:
    """A result whose first ``wrong`` predictions are wrong, with rising confidence."""
    targets = torch.arange(n) % 10
    logits = torch.full((n, 10), -4.0)
    logits[torch.arange(n), targets] = 4.0
    for i in range(wrong):
        logits[i, (targets[i] + 1) % 10] = 5.0 + i  # later mistakes are more confident
    log_probs = torch.log_softmax(logits, dim=1)
    correct = int((log_probs.argmax(1) == targets).sum())
    return utils.EvalResult(0.1, correct, n, log_probs, targets)


def test_per_class_report_counts_the_whole_set() -> None:
    result = fake_result()
    report = utils.per_class_report(result).splitlines()
    assert len(report) == 10
    assert report[0] == "Accuracy of 0 - zero : 95.00 % (19/20)"
    assert report[3] == "Accuracy of 3 - three : 95.00 % (19/20)"
    assert report[9] == "Accuracy of 9 - nine : 100.00 % (20/20)"
    cm = utils.confusion_matrix(result)
    assert int(cm.sum()) == 200 and int(cm.trace()) == result.correct and int(cm[0, 1]) == 1


def test_misclassified_are_ordered_most_confident_first() -> None:
    assert utils.misclassified(fake_result()).tolist() == [6, 5, 4, 3, 2, 1, 0]


def test_plots_are_written_as_png(tmp_path: Path) -> None:
    images, labels = synthetic_digits(200, seed=1)
    images = torch.from_numpy(images)
    result = fake_result()
    history = utils.History()
    for epoch in (1, 2, 3):
        history.append(epoch, utils.EpochTotals(10, 100, 50.0 / epoch, 90 + epoch, 0.01),
                       utils.EvalResult(0.1 / epoch, 95 + epoch, 100, torch.zeros(0, 10), torch.zeros(0)), 1.0)
    utils.write_history_csv(tmp_path / "run.csv", history)
    figures = {
        "metrics": utils.plot_metrics(tmp_path / "run.csv", save=tmp_path / "metrics.png"),  # re-plot from CSV
        "samples": utils.plot_samples(images, torch.from_numpy(labels), save=tmp_path / "samples.png"),
        "predictions": utils.plot_predictions(images, result, save=tmp_path / "predictions.png"),
        "misclassified": utils.plot_misclassified(images, result, save=tmp_path / "misclassified.png"),
        "per_class": utils.plot_per_class(result, save=tmp_path / "per_class.png"),
        "confusion": utils.plot_confusion(result, save=tmp_path / "confusion.png"),
        "augmentation": utils.plot_augmentation(images, utils.Augment(), save=tmp_path / "augmentation.png"),
    }
    for name, fig in figures.items():
        png = tmp_path / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000, name
        assert fig._suptitle is not None or fig.axes[0].get_title(), f"{name} has no title"
    assert "7 of 200 wrong" in figures["misclassified"]._suptitle.get_text()


def test_metrics_plot_rejects_a_csv_that_is_not_a_training_log(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("a\n1\n")
    with pytest.raises(ValueError, match="not a training log CSV"):
        utils.plot_metrics(tmp_path / "x.csv")
