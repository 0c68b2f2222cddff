"""Training machinery for the Week 5 Net, in data-flow order: augmentation and the device-side
loader, train/test loops, learning-rate schedules, the per-epoch history and its CSV, and plots."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn
from tqdm import tqdm  # text bars: they also render in saved notebooks

from s5.constants import CLASS_NAMES, MNIST_MEAN, MNIST_STD, SIDE
from s5.files import atomic_write_bytes

# --- Batches on the device, and augmentation as batched tensor math


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 or float 0..1, (N, 28, 28) or (N, 1, 28, 28) -> float (N, 1, 28, 28) normalized
    with MNIST's mean/std. The one normalization: the loader, plots and predict.py all use it."""
    x = images.reshape(-1, 1, SIDE, SIDE)
    x = x.float().div_(255) if images.dtype == torch.uint8 else x.float().clone()
    return x.sub_(MNIST_MEAN).div_(MNIST_STD)


@dataclass(frozen=True)
class Augment:
    """Random affine augmentation, one warp per image. The seed's transforms are
    ``RandomApply([CenterCrop(22)], p=0.1)``, ``Resize(28)`` and ``RandomRotation(±15°, fill=0)``:
    ``Augment()`` does exactly that. ``translate`` (fraction of the image) and ``scale`` add mild
    shifts and zooms; ``lowres`` is the fraction of images seen as a small scan enlarged
    (area-reduced to ``lowres_sides`` px, one side per batch, then bilinear back to 28)."""

    degrees: float = 15.0
    crop_p: float = 0.1
    crop_size: int = 22
    translate: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    lowres: float = 0.0
    lowres_sides: tuple[int, int] = (10, 20)  # 20-px box at 7-14 px: an 8x8 or 16x16 scan enlarged

    @classmethod
    def from_settings(cls, settings: dict) -> Augment:
        """The augmentation of a run's settings (train.py's flags, as its run file records them)."""
        return cls(degrees=settings["degrees"], crop_p=settings["crop_p"],
                   translate=settings["translate"],
                   scale=(settings["scale_min"], settings["scale_max"]), lowres=settings["lowres"])


def affine_warp(images: torch.Tensor, angles: torch.Tensor, zooms: torch.Tensor,
                shifts: torch.Tensor | None = None) -> torch.Tensor:
    """Warp a (N, C, H, W) float batch: rotate each image counter-clockwise by ``angles`` (degrees)
    about its centre, after showing only the central ``zooms`` fraction of it (0.5 = 2x zoom-in),
    then shift it by ``shifts`` (N, 2) in fractions of its width/height. Outside is filled with 0.
    """
    theta = torch.deg2rad(angles.float())
    cos, sin = torch.cos(theta) * zooms, torch.sin(theta) * zooms
    # output pixel p samples input at zoom * R(-angle) @ (p - shift); the grid spans [-1, 1]
    matrix = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    offset = (torch.zeros_like(matrix[..., 0]) if shifts is None
              else -(matrix @ (2 * shifts.unsqueeze(-1))).squeeze(-1))
    grid = F.affine_grid(torch.cat([matrix, offset.unsqueeze(-1)], -1).to(images.dtype),
                         list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def blank_outside_center(images: torch.Tensor, size: int) -> torch.Tensor:
    """Zero everything outside the central ``size`` x ``size`` window (what CenterCrop keeps)."""
    h, w = images.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return images * F.pad(images.new_ones(size, size), (left, w - size - left, top, h - size - top))


def augment_batch(images: torch.Tensor, aug: Augment, generator: torch.Generator) -> torch.Tensor:
    """Apply ``aug`` to a (N, 1, 28, 28) float batch with one random warp per image."""
    n = images.shape[0]
    u = torch.rand(n, 5, generator=generator, device=images.device)
    angles = (u[:, 0] * 2 - 1) * aug.degrees
    cropped = u[:, 1] < aug.crop_p
    if aug.crop_p > 0:  # rotation then exposes black, not the cropped-off border
        images = torch.where(cropped.view(-1, 1, 1, 1), blank_outside_center(images, aug.crop_size),
                             images)
    zooms = torch.where(cropped, aug.crop_size / images.shape[-1], 1.0)
    lo, hi = aug.scale
    zooms = zooms / (lo + (hi - lo) * u[:, 2])
    shifts = (u[:, 3:5] * 2 - 1) * aug.translate if aug.translate else None
    images = affine_warp(images, angles, zooms, shifts)
    if aug.lowres:
        v = torch.rand(n + 1, generator=generator, device=images.device)
        side = int(aug.lowres_sides[0]
                   + (aug.lowres_sides[1] + 1 - aug.lowres_sides[0]) * float(v[n]))
        picked = (v[:n] < aug.lowres).nonzero().squeeze(1)  # only these are reduced, not the batch
        small = F.interpolate(F.interpolate(images[picked], size=side, mode="area"), size=28,
                              mode="bilinear")
        # full contrast, as predict.py gives its inputs
        small = small / small.amax((1, 2, 3), keepdim=True).clamp(min=1e-3)
        images = images.index_copy(0, picked, small)
    return images


def _batch_seed(seed: int, epoch: int, batch: int) -> int:
    """A seed for one batch of one epoch, so any batch can be replayed (e.g. after --resume)."""
    return hash((seed, epoch, batch)) & 0x7FFF_FFFF_FFFF_FFFF


class DeviceLoader:
    """Shuffled, augmented, normalized batches from uint8 tensors that already sit on the device.

    ``chunk`` batches are augmented together (one warp: on a GPU a step costs launches, not
    arithmetic). The generator is re-seeded per (seed, epoch, chunk): a batch is the same whether
    training resumed or not. With ``extra_share`` > 0, that fraction of the images is swapped for
    random ones of ``extra`` (images, labels)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 shuffle: bool = False, augment: Augment | None = None, seed: int = 0,
                 chunk: int = 1, extra: tuple[torch.Tensor, torch.Tensor] | None = None,
                 extra_share: float = 0.0) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if extra_share and (extra is None or not len(extra[0]) or len(extra[0]) != len(extra[1])):
            raise ValueError("extra_share needs extra images with one label each")
        self.images, self.labels, self.extra, self.extra_share = images, labels, extra, extra_share
        self.batch_size, self.shuffle, self.augment, self.seed, self.chunk = (
            batch_size, shuffle, augment, seed, chunk)
        self.generator = torch.Generator(device=images.device)

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def batches(self, epoch: int = 1,
                start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (images, labels) batches of ``epoch``, beginning at batch index ``start``."""
        n = len(self.images)
        order = None
        if self.shuffle:
            self.generator.manual_seed(_batch_seed(self.seed, epoch, -1))
            order = torch.randperm(n, generator=self.generator, device=self.images.device)
        bs, chunk_start, chunk, chunk_labels = self.batch_size, -1, None, None
        for b in range(start, len(self)):
            first = b - b % self.chunk  # this batch's chunk: batches first .. first + chunk - 1
            if first != chunk_start:
                idx = slice(first * bs, (first + self.chunk) * bs)
                picked = idx if order is None else order[idx]
                x, chunk_labels = self.images[picked], self.labels[picked]
                if self.augment is not None:  # the warp works on 0..1 floats, before normalization
                    self.generator.manual_seed(_batch_seed(self.seed, epoch, first))
                    if self.extra_share:
                        x, chunk_labels = self._swap_in_extra(x, chunk_labels)
                    x = augment_batch(x.unsqueeze(1).float().div_(255), self.augment,
                                      self.generator)
                # channels_last: the layout oneDNN and cuDNN convolutions are fastest in
                chunk_start, chunk = first, normalize(x).contiguous(
                    memory_format=torch.channels_last)
            part = slice((b - first) * bs, (b - first + 1) * bs)
            yield chunk[part], chunk_labels[part]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches()

    def _swap_in_extra(self, x: torch.Tensor,
                       y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Swap each image of a chunk, with probability ``extra_share``, for one of ``extra``."""
        extra_images, extra_labels = self.extra
        swap = torch.rand(len(x), generator=self.generator, device=x.device) < self.extra_share
        pick = torch.randint(len(extra_images), (len(x),), generator=self.generator,
                             device=x.device)
        return (torch.where(swap.view(-1, 1, 1), extra_images[pick], x),
                torch.where(swap, extra_labels[pick], y))


# --- Train and test


def autocast(device: torch.device, dtype: torch.dtype | None):
    """An autocast context for ``dtype``, or a no-op one when ``dtype`` is None."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, batch: int) -> None:
        super().__init__(f"the training loss became NaN/inf at epoch {epoch}, batch {batch}; "
                         "the run is stopped. Lower --lr (or use --amp off) and train again.")
        self.epoch, self.batch = epoch, batch


@dataclass
class EpochTotals:
    """Running sums of one training epoch; saved in a checkpoint when an epoch is interrupted."""

    batches: int = 0
    seen: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    lr: float = 0.0  # the learning rate when the epoch started
    seconds: float = 0.0  # trained so far; absent from checkpoints before it was kept: 0

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.seen, 1)

    @property
    def accuracy(self) -> float:
        return 100.0 * self.correct / max(self.seen, 1)


def smoothed_nll(log_probs: torch.Tensor, target: torch.Tensor,
                 smoothing: float = 0.0) -> torch.Tensor:
    """Mean negative log-likelihood of log-probabilities, with optional label smoothing."""
    nll = F.nll_loss(log_probs, target)
    if smoothing:  # the target: 1 - smoothing on the label, smoothing spread over all 10 classes
        return (1 - smoothing) * nll - smoothing * log_probs.mean(dim=1).mean()
    return nll


def train(model: nn.Module, loader: DeviceLoader, optimizer: torch.optim.Optimizer, *,
          epoch: int, schedule: Schedule | None = None, amp_dtype: torch.dtype | None = None,
          scaler: torch.amp.GradScaler | None = None, label_smoothing: float = 0.0,
          totals: EpochTotals | None = None, should_stop: Callable[[], bool] = lambda: False,
          log: Callable[[str], None] | None = None, progress: bool = True,
          n_batches: int | None = None,
          after_step: Callable[[int], None] | None = None) -> EpochTotals:
    """Train an epoch's first ``n_batches`` batches (all by default; fewer in a fractional last
    epoch), or their rest after ``totals.batches`` done ones, stepping ``schedule`` after every
    batch or after the epoch, as it asks.

    The bar reads like the seed's (``Train: Loss=… Batch_id=… Accuracy=…``); sums stay on the
    device, read only to display, so a CUDA step never waits for the host. When ``should_stop()``
    turns true (Ctrl-C) the epoch ends after this step. Raises ``NonFiniteLossError`` on NaN/inf
    loss. ``scaler`` (fp16) belongs to the run. ``after_step(batches)`` is called after each step
    with the epoch's batches done so far (tools.frontier evaluates there)."""
    model.train()
    totals = EpochTotals(lr=optimizer.param_groups[0]["lr"]) if totals is None else totals
    device = next(model.parameters()).device
    # float32 (MPS has no float64), continued from a resumed epoch's partial sum: same additions
    loss_sum = torch.full((), totals.loss_sum, device=device)
    correct = torch.full((), totals.correct, device=device, dtype=torch.int64)
    first_bad = torch.full((), -1, device=device, dtype=torch.int64)
    n_batches = len(loader) if n_batches is None else n_batches
    display_every = max(1, n_batches // 20)
    log_every = max(1, math.ceil(n_batches / 4))
    if scaler is None:  # fp16 gradients underflow without loss scaling
        scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    bar = tqdm(total=n_batches, initial=totals.batches, disable=not progress, dynamic_ncols=True,
               leave=True)
    for batch_id, (data, target) in enumerate(loader.batches(epoch, totals.batches),
                                              start=totals.batches):
        with autocast(device, amp_dtype):
            output = model(data)
            loss = smoothed_nll(output.float(), target, label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if schedule is not None:
            schedule.after_batch()
        loss_sum += loss.detach() * len(target)
        correct += (output.argmax(dim=1) == target).sum()
        bad = ~torch.isfinite(loss.detach())
        first_bad = torch.where(bad & (first_bad < 0), batch_id, first_bad)
        totals.batches, totals.seen = batch_id + 1, totals.seen + len(target)
        if after_step is not None:
            after_step(totals.batches)
        bar.update(1)
        last = totals.batches == n_batches or should_stop()
        write_log = log is not None and (last or totals.batches % log_every == 0)
        # the last step is always checked
        if last or write_log or totals.batches % display_every == 0:
            if (bad_at := int(first_bad)) >= 0:
                bar.close()
                raise NonFiniteLossError(epoch, bad_at)
            accuracy = 100.0 * int(correct) / totals.seen
            desc = f"Train: Loss={loss.item():.4f} Batch_id={batch_id} Accuracy={accuracy:.2f}"
            bar.set_description(desc, refresh=False)
            if write_log:
                log(desc)
        if last:
            break
    bar.close()
    totals.loss_sum, totals.correct = float(loss_sum), int(correct)
    if schedule is not None and totals.batches == n_batches:
        schedule.after_epoch()
    return totals


@dataclass
class EvalResult:
    """Loss and accuracy over a whole split, plus every prediction for plots and reports."""

    loss: float
    correct: int
    total: int
    log_probs: torch.Tensor  # (N, 10) on the CPU
    targets: torch.Tensor  # (N,) on the CPU
    split: str = "test"  # or "val": what these images are

    @property
    def split_name(self) -> str:
        return SPLITS[self.split]

    @property
    def accuracy(self) -> float:
        return 100.0 * self.correct / max(self.total, 1)

    @property
    def predictions(self) -> torch.Tensor:
        return self.log_probs.argmax(dim=1)


@torch.inference_mode()
def test(model: nn.Module, loader: DeviceLoader, log: Callable[[str], None] | None = None,
         split: str = "test") -> EvalResult:
    """Evaluate in fp32 over the whole split; the average loss is the summed per-sample NLL / N."""
    model.eval()
    outputs, targets = [], []
    for data, target in loader:
        outputs.append(model(data).float())
        targets.append(target)
    log_probs, target = torch.cat(outputs), torch.cat(targets)
    loss = F.nll_loss(log_probs, target, reduction="sum").item() / max(len(target), 1)
    correct = int((log_probs.argmax(dim=1) == target).sum())
    result = EvalResult(loss, correct, len(target), log_probs.cpu(), target.cpu(), split)
    if log is not None:
        log(f"{result.split_name} set: Average loss: {result.loss:.4f}, "
            f"Accuracy: {correct}/{result.total} ({result.accuracy:.2f}%)")
    return result


# --- Learning-rate schedules


@dataclass
class Schedule:
    """A scheduler and when it steps: per batch (OneCycle) or per epoch (StepLR)."""

    scheduler: torch.optim.lr_scheduler.LRScheduler
    per_batch: bool

    def after_batch(self) -> None:
        if self.per_batch:
            self.scheduler.step()

    def after_epoch(self) -> None:
        if not self.per_batch:
            self.scheduler.step()


def epoch_batches(epochs: float, steps_per_epoch: int) -> list[int]:
    """Batches per epoch for ``epochs`` (0.5: half an epoch; 2.25: two and a quarter), >= 1."""
    total = max(1, round(epochs * steps_per_epoch))
    return ([steps_per_epoch] * (total // steps_per_epoch)
            + [total % steps_per_epoch] * bool(total % steps_per_epoch))


def make_schedule(name: str, optimizer: torch.optim.Optimizer, *, epochs: float,
                  steps_per_epoch: int, step_size: int = 15, gamma: float = 0.1,
                  pct_start: float = 0.25) -> Schedule:
    """``step``: the seed's StepLR, per epoch; ``onecycle``: OneCycleLR peaking at the optimizer's
    lr (warm-up over ``pct_start`` of the steps, then linear decay), per batch over exactly the
    batches ``epoch_batches`` plans."""
    if name == "step":
        return Schedule(torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size,
                                                        gamma=gamma), False)
    if name == "onecycle":
        total = sum(epoch_batches(epochs, steps_per_epoch))
        if math.isclose(pct_start * total, 1.0):  # OneCycleLR divides by (warm-up steps - 1)
            pct_start = 2.0 / total
        return Schedule(torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=optimizer.param_groups[0]["lr"], total_steps=total,
            pct_start=pct_start, anneal_strategy="linear", div_factor=25.0,
            final_div_factor=1e3), True)
    raise ValueError(f"unknown scheduler {name!r}: use step or onecycle")


# --- History and logs


# The CSV's columns and their types. "eval" columns are written "test_*" for a run evaluated on
# the test set and "val_*" under --val, so a file never calls validation numbers "test".
COLUMNS: dict[str, type] = {"epoch": float, "lr": float, "train_loss": float, "train_acc": float,
                            "eval_loss": float, "eval_acc": float, "eval_correct": int,
                            "eval_total": int, "seconds": float}
CSV_FORMATS = {"epoch": "{:g}", "lr": "{:.6g}", "eval_correct": "{:d}", "eval_total": "{:d}",
               "seconds": "{:.2f}"}
SPLITS = {"test": "Test", "val": "Validation"}  # split -> how the log, plots and README name it


@dataclass
class History:
    """Per-epoch metrics of one run; ``split`` says what eval_* was measured on: "test" or "val"."""

    split: str = "test"
    epoch: list[float] = field(default_factory=list)  # epochs trained so far: may be fractional
    lr: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    eval_acc: list[float] = field(default_factory=list)
    eval_correct: list[int] = field(default_factory=list)
    eval_total: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def split_name(self) -> str:  # "Test" or "Validation", wherever the eval numbers are shown
        return SPLITS[self.split]

    def append(self, epoch: float, train: EpochTotals, result: EvalResult, seconds: float) -> None:
        row = (epoch, train.lr, train.loss, train.accuracy, result.loss, result.accuracy,
               result.correct, result.total, seconds)
        for name, value in zip(COLUMNS, row, strict=True):
            getattr(self, name).append(value)

    def __len__(self) -> int:
        return len(self.epoch)

    def rows(self) -> list[dict[str, float]]:
        return [{name: getattr(self, name)[i] for name in COLUMNS} for i in range(len(self))]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> History:
        return cls(split=data["split"], **{name: list(data[name]) for name in COLUMNS})


def csv_header(split: str) -> list[str]:
    """The CSV's column names for a run evaluated on ``split``."""
    return [name.replace("eval", split) for name in COLUMNS]


def write_history_csv(path: Path, history: History) -> None:
    """Write one row per epoch (atomically: the file is always complete)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(csv_header(history.split))
    for row in history.rows():
        writer.writerow([CSV_FORMATS.get(k, "{:.6f}").format(v) for k, v in row.items()])
    atomic_write_bytes(Path(path), buf.getvalue().encode())


def load_history(path: str | Path) -> History:
    """Load a run's ``logs/<run-id>.csv`` back into a ``History`` (to re-plot without training)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        found = list(reader.fieldnames or ())
        split = next((s for s in SPLITS if found == csv_header(s)), None)
        if split is None:
            raise ValueError(f"{path} is not a training log CSV: its columns are {found}, expected "
                             f"{csv_header('test')} (or val_* under --val)")
        history = History(split=split)
        for row in reader:
            for name, column in zip(COLUMNS, csv_header(split), strict=True):
                getattr(history, name).append(COLUMNS[name](row[column]))
    return history


# --- Plots: each returns a matplotlib Figure (inline in notebooks); given ``save``, a PNG too


def save_figure(fig: Figure, save: str | Path | None) -> Figure:
    """``fig``, also written to ``save`` as a PNG when given."""
    if save is not None:
        Path(save).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(save, dpi=110, bbox_inches="tight", facecolor="white")
    return fig


def plot_metrics(history: History | str | Path, save: str | Path | None = None) -> Figure:
    """2x2 plot of train and test (or validation) loss and accuracy per epoch, from a History or
    a run's CSV."""
    if not isinstance(history, History):
        history = load_history(history)
    fig = Figure(figsize=(12, 8))
    axes = fig.subplots(2, 2)
    split = history.split_name
    panels = [("Training loss", history.train_loss), (f"{split} loss", history.eval_loss),
              ("Training accuracy (%)", history.train_acc),
              (f"{split} accuracy (%)", history.eval_acc)]
    for ax, (title, values) in zip(axes.flat, panels, strict=True):
        ax.plot(history.epoch, values, marker="o")
        ax.set(title=title, xlabel="epoch", xticks=history.epoch)
        ax.grid(alpha=0.3)
    axes[1, 1].annotate(f"{history.eval_acc[-1]:.2f}%", (history.epoch[-1], history.eval_acc[-1]),
                        textcoords="offset points", xytext=(-10, -18), ha="right")
    fig.suptitle(f"Training and {split.lower()} metrics per epoch "
                 f"(final {split.lower()} accuracy {history.eval_acc[-1]:.2f}%)")
    fig.tight_layout()
    return save_figure(fig, save)


def _image_grid(images: torch.Tensor, titles: list[str], suptitle: str, cols: int = 10,
                colors: list[str] | None = None) -> Figure:
    rows = max(1, math.ceil(len(images) / cols))
    fig = Figure(figsize=(cols * 1.25, rows * 1.55))
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(images[i].reshape(28, 28).cpu().numpy(), cmap="gray_r")
            ax.set_title(titles[i], fontsize=9, color=(colors or ["black"] * len(images))[i])
    fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_samples(images: torch.Tensor, labels: torch.Tensor, n: int = 20,
                 save: str | Path | None = None) -> Figure:
    """A grid of the first ``n`` training images with their labels."""
    titles = [f"label {int(y)}" for y in labels[:n]]
    return save_figure(_image_grid(images[:n], titles,
                                   "Sample training images with their labels"), save)


def plot_predictions(images: torch.Tensor, result: EvalResult, n: int = 20,
                     save: str | Path | None = None) -> Figure:
    """The first ``n`` evaluated images with true and predicted labels (red when wrong)."""
    pred = result.log_probs[:n].argmax(dim=1)
    titles = [f"true {int(t)} / pred {int(p)}"
              for t, p in zip(result.targets[:n], pred, strict=True)]
    colors = ["black" if int(t) == int(p) else "red"
              for t, p in zip(result.targets[:n], pred, strict=True)]
    split = result.split_name.lower()
    fig = _image_grid(images[:n], titles,
                      f"Sample {split} predictions (true / predicted), first {n} {split} images",
                      cols=5, colors=colors)
    return save_figure(fig, save)


def misclassified(result: EvalResult) -> torch.Tensor:
    """Indices of the wrong predictions, most confident mistake first."""
    confidence, pred = result.log_probs.exp().max(dim=1)
    wrong = torch.nonzero(pred != result.targets).flatten()
    return wrong[torch.argsort(confidence[wrong], descending=True, stable=True)]


def plot_misclassified(images: torch.Tensor, result: EvalResult, n: int = 20,
                       save: str | Path | None = None) -> Figure:
    """The ``n`` most confident mistakes over the evaluated set, with true/predicted/probability."""
    idx = misclassified(result)
    probs = result.log_probs.exp()
    titles = [f"true {int(result.targets[i])} / pred {int(probs[i].argmax())}\n"
              f"p={float(probs[i].max()):.2f}" for i in idx[:n]]
    suptitle = (f"Misclassified {result.split_name.lower()} images, most confident first "
                f"({len(idx)} of {result.total:,} wrong; showing {min(n, len(idx))})")
    fig = _image_grid(images[idx[:n].to(images.device)] if len(idx) else images[:0], titles,
                      suptitle, cols=5, colors=["red"] * len(titles))
    return save_figure(fig, save)


def per_class_accuracy(result: EvalResult) -> list[tuple[int, int, int]]:
    """(class, correct, total) for each digit over the whole evaluated set."""
    pred = result.predictions
    return [(c, int(((pred == c) & (result.targets == c)).sum()), int((result.targets == c).sum()))
            for c in range(10)]


def per_class_report(result: EvalResult) -> str:
    """Lines like ``Accuracy of 3 - three : 99.21 % (1002/1010)``, one per digit, full set."""
    return "\n".join(f"Accuracy of {c} - {CLASS_NAMES[c]} : {100 * ok / max(n, 1):.2f} % ({ok}/{n})"
                     for c, ok, n in per_class_accuracy(result))


def plot_per_class(result: EvalResult, save: str | Path | None = None) -> Figure:
    """Bar chart of per-class accuracy with counts, over the whole evaluated set."""
    stats = per_class_accuracy(result)
    acc = [100 * ok / max(n, 1) for _, ok, n in stats]
    fig = Figure(figsize=(10, 4.5))
    ax = fig.subplots()
    bars = ax.bar([f"{c} - {CLASS_NAMES[c]}" for c in range(10)], acc, color="tab:blue")
    for bar, (_, ok, n), a in zip(bars, stats, acc, strict=True):
        ax.annotate(f"{a:.2f}%\n{ok}/{n}", (bar.get_x() + bar.get_width() / 2, a), ha="center",
                    va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    low = min(acc)
    ax.set(ylim=(max(0.0, low - (100 - low) * 1.5 - 0.5), 100 + (100 - low) * 0.4 + 0.3),
           ylabel="accuracy (%)")
    ax.tick_params(axis="x", labelrotation=30)
    split = result.split_name.lower()
    ax.set_title(f"Per-class {split} accuracy on all {result.total:,} {split} images "
                 "(y axis starts above 0)", pad=12)
    fig.tight_layout()
    return save_figure(fig, save)


def confusion_matrix(result: EvalResult) -> torch.Tensor:
    """10x10 counts: row = true class, column = predicted class."""
    return torch.bincount(result.targets * 10 + result.predictions, minlength=100).reshape(10, 10)


def plot_confusion(result: EvalResult, save: str | Path | None = None) -> Figure:
    """Confusion-matrix heatmap (log colour scale so the few mistakes stay visible), with counts."""
    from matplotlib.colors import LogNorm

    cm = confusion_matrix(result).numpy()
    fig = Figure(figsize=(7.5, 6.5))
    ax = fig.subplots()
    image = ax.imshow(cm + 1, cmap="Blues", norm=LogNorm())
    for t, p in zip(*cm.nonzero(), strict=True):  # every non-zero cell, with its count
        ax.text(p, t, str(cm[t, p]), ha="center", va="center", fontsize=8,
                color="white" if cm[t, p] > cm.max() / 10 else "black")
    ax.set(xticks=range(10), yticks=range(10), xlabel="predicted digit", ylabel="true digit")
    errors = result.total - result.correct
    ax.set_title(f"Confusion matrix, {result.total:,} {result.split_name.lower()} images "
                 f"({errors} errors)")
    fig.colorbar(image, ax=ax, label="count + 1 (log scale)")
    fig.tight_layout()
    return save_figure(fig, save)


def plot_augmentation(images: torch.Tensor, aug: Augment, n: int = 8, per_image: int = 5,
                      seed: int = 0, save: str | Path | None = None) -> Figure:
    """Each of ``n`` training images (left column) beside ``per_image`` random augmentations."""
    originals = images[:n].reshape(-1, 1, 28, 28).float().div(255).cpu()
    generator = torch.Generator().manual_seed(seed)
    augmented = augment_batch(originals.repeat_interleave(per_image, 0), aug, generator)
    fig = Figure(figsize=((per_image + 1) * 1.2, n * 1.25))
    axes = fig.subplots(n, per_image + 1, squeeze=False)
    for i in range(n):
        row = [originals[i], *augmented[i * per_image:(i + 1) * per_image]]
        for k, (ax, img) in enumerate(zip(axes[i], row, strict=True)):
            ax.imshow(img.reshape(28, 28).numpy(), cmap="gray_r", vmin=0, vmax=1)
            ax.axis("off")
            if i == 0:
                ax.set_title("original" if k == 0 else f"augmented {k}", fontsize=9)
    parts = [f"rotation ±{aug.degrees:g}°", f"CenterCrop({aug.crop_size}) p={aug.crop_p:g}",
             aug.translate and f"shift ±{aug.translate:g}",
             aug.scale != (1.0, 1.0) and f"zoom {aug.scale[0]:g}-{aug.scale[1]:g}",
             aug.lowres and f"low-res p={aug.lowres:g}"]
    fig.suptitle("Augmentation: " + ", ".join(part for part in parts if part))
    fig.tight_layout()
    return save_figure(fig, save)
