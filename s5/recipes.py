"""The recipes: every setting a run trains with, as values of one frozen dataclass.

``RECIPES["fast"].replace(lr=3e-3)`` is the fast recipe with one change; ``training.train`` runs it.
Each recipe was chosen on the validation split (``val=10000``), never on the test set.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    """What a run trains with: a recipe's 17 settings, then the seed, precision, split and
    evaluation batch. The run file and the checkpoint record them all; a resumed run keeps them."""

    recipe: str = "default"  # the recipe these settings started from
    epochs: float = 5  # a fraction trains part of the last epoch
    batch_size: int = 64
    lr: float = 0.002  # the peak of OneCycle, the start of StepLR
    momentum: float = 0.95  # SGD's and Muon's
    weight_decay: float = 1e-4
    optimizer: str = "muon"  # sgd, adamw or muon
    scheduler: str = "onecycle"  # onecycle (per batch) or step (StepLR, per epoch)
    step_size: int = 2  # StepLR: epochs between decays
    gamma: float = 0.1  # StepLR: decay factor
    label_smoothing: float = 0.1
    degrees: float = 15.0  # augmentation: random rotation ±degrees
    crop_p: float = 0.1  # augmentation: probability of the seed's CenterCrop(22) + resize
    translate: float = 0.08  # augmentation: random shift, fraction of a side
    scale_min: float = 0.9  # augmentation: random zoom range
    scale_max: float = 1.1
    lowres: float = 0.3  # augmentation: fraction of images seen as a 10-20 px scan enlarged
    font_digits: float = 0.0  # fraction of training images swapped for handwriting-font digits
    seed: int = 1
    amp: str = "auto"  # auto (bf16 where native), bf16, fp16 or off
    val: int = 0  # evaluate on the last N training images, held out, instead of the test set
    test_batch_size: int = 1000

    def replace(self, **changes: object) -> Settings:
        """These settings with ``changes`` (``TypeError`` for a name that is not a setting)."""
        return dataclasses.replace(self, **changes)

    def check(self) -> Settings:
        """``ValueError`` with one line for a value no run can use; returns ``self``."""
        choices = {"optimizer": ("sgd", "adamw", "muon"), "scheduler": ("step", "onecycle"),
                   "amp": ("auto", "bf16", "fp16", "off")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key}={getattr(self, key)!r}: use one of {', '.join(allowed)}")
        if not (self.epochs > 0 and self.lr > 0 and min(self.batch_size, self.test_batch_size) > 0):
            raise ValueError("epochs, batch_size, lr and test_batch_size must be positive")
        if self.scale_min > self.scale_max:
            raise ValueError(f"scale_min {self.scale_min:g} is above scale_max {self.scale_max:g}")
        return self


TRAINING_KEYS = tuple(f.name for f in dataclasses.fields(Settings))  # a resumed run keeps these
RECIPE_KEYS = TRAINING_KEYS[1:18]  # what a recipe chooses

DEFAULT = Settings()
SEED_AUGMENTATION = dict(translate=0.0, scale_min=1.0, scale_max=1.0, lowres=0.0)  # rotation, crop
ADAMW = dict(optimizer="adamw", momentum=0.9)
RECIPES = {
    # Muon + OneCycle, label smoothing, mild shift and zoom, 30% of images seen as a small scan.
    "default": DEFAULT,
    # The fastest path to 99%: docs/studies/fast.md.
    "fast": DEFAULT.replace(recipe="fast", epochs=0.5, lr=0.006, momentum=0.9,
                            label_smoothing=0.09, degrees=7.5, **SEED_AUGMENTATION),
    # The original assignment: batch 1024, SGD 0.01 momentum 0.9, StepLR(step_size=2, gamma=0.1).
    "seed": DEFAULT.replace(recipe="seed", batch_size=1024, lr=0.01, momentum=0.9, weight_decay=0.0,
                            optimizer="sgd", scheduler="step", label_smoothing=0.0,
                            **SEED_AUGMENTATION),
    # For your own handwriting: a quarter of the images are handwriting-font digits.
    "handwriting": DEFAULT.replace(recipe="handwriting", font_digits=0.25, **ADAMW),
    # On a GPU a step costs kernel launches, so larger batches.
    "gpu": DEFAULT.replace(recipe="gpu", batch_size=512, lr=0.008, lowres=0.0, **ADAMW),
    "gpu-fast": DEFAULT.replace(recipe="gpu-fast", epochs=1, batch_size=256, lr=0.012, **ADAMW,
                                **SEED_AUGMENTATION),
}
