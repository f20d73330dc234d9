"""The paper's learning-rate schedules (LRnorm / LRfast / LRadju) per family, plus cosine.

Formulas as in the original training scripts, with e the 0-based epoch:
- ResNets (and the CIFAR ResNets): LRnorm lr·0.1^(e//30) over 100 epochs; LRfast
  lr·(1 − (e−1)/52)^11 over 30; LRadju lr·(1 − (e−1)/49)^2 over 50 (the e−1 offset puts epoch 0
  above lr, as in the original).
- MobileNetV2: LRnorm lr·0.98^e (400 epochs in the paper); LRfast lr·0.92^e over 100; LRadju
  piecewise linear 0.06 → 0.01 (epochs 0–50) → 0.001 (50–100) → 1e-5 (100–150), then 1e-5.
- ShuffleNetV2: per iteration lr·(1 − it/(iters_per_epoch·epochs)) over 240 / 60 / 100 epochs.
- cosine: lr·½(1 + cos(π·t/epochs)) per iteration, on any family.
When ``epochs`` differs from the recipe's, the schedule is stretched to it (time scaled by
recipe epochs / epochs), so a short run still decays like the recipe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..choices import LR_MODES
from ..errors import Error
from ..models import architecture_info, checkpoint_record


class TrainError(Error, ValueError):
    """A training run that cannot start as configured, with the fix in the message."""



@dataclass(frozen=True)
class Recipe:
    """The original per-family hyperparameters of one LR mode."""

    lr: float
    batch_size: int
    weight_decay: float
    epochs: int
    per_iteration: bool = False


_RECIPES = {
    "resnet": {"LRnorm": Recipe(0.1, 256, 1e-4, 100), "LRfast": Recipe(0.1, 256, 1e-4, 30),
               "LRadju": Recipe(0.1, 256, 1e-4, 50)},
    "mobilenet_v2": {"LRnorm": Recipe(0.045, 96, 4e-5, 400), "LRfast": Recipe(0.06, 96, 4e-5, 100),
                     "LRadju": Recipe(0.06, 192, 4e-5, 150)},
    "shufflenet_v2": {mode: Recipe(0.5, 1024, 4e-5, epochs, per_iteration=True)
                      for mode, epochs in (("LRnorm", 240), ("LRfast", 60), ("LRadju", 100))},
}


def family(arch: str) -> str:
    """The recipe family of an architecture or checkpoint record (CIFAR ResNets use the ResNet rules)."""
    record = checkpoint_record(arch)
    name = architecture_info(record.architecture if record else arch).family
    return "resnet" if name == "cifar_resnet" else name


def recipe(arch: str, lr_mode: str) -> Recipe:
    """The original hyperparameters; ``cosine`` borrows LRnorm's lr, batch, weight decay and epochs."""
    if lr_mode not in LR_MODES:
        raise TrainError(f"unknown lr mode {lr_mode!r}; choose one of {', '.join(LR_MODES)}")
    base = _RECIPES[family(arch)]["LRnorm" if lr_mode == "cosine" else lr_mode]
    return Recipe(base.lr, base.batch_size, base.weight_decay, base.epochs, per_iteration=lr_mode == "cosine"
                  or base.per_iteration)


def _piecewise_mobilenet(e: float) -> float:
    for start, end, high, low in ((0, 50, 0.06, 0.01), (50, 100, 0.01, 0.001), (100, 150, 0.001, 1e-5)):
        if e <= end:
            return high + (low - high) * (e - start) / (end - start)
    return 1e-5


def lr_at(arch: str, lr_mode: str, epoch: int, iteration: int = 0, iters_per_epoch: int = 1,
          *, lr: float | None = None, epochs: int | None = None) -> float:
    """Learning rate at (epoch, iteration) for an architecture and LR mode."""
    plan = recipe(arch, lr_mode)
    base = lr if lr is not None else plan.lr
    total = plan.epochs if epochs is None else epochs
    stretch = plan.epochs / total
    if plan.per_iteration:
        progress = (epoch + iteration / iters_per_epoch) / total  # fraction of training done
        if lr_mode == "cosine":
            return base * 0.5 * (1 + math.cos(math.pi * progress))
        return base * (1 - progress)
    e = epoch * stretch
    kind = family(arch)
    if kind == "resnet":
        if lr_mode == "LRnorm":
            return base * 0.1 ** (int(e) // 30)
        if lr_mode == "LRfast":
            return base * (1 - (e - 1) / 52) ** 11
        return base * (1 - (e - 1) / 49) ** 2
    if lr_mode == "LRnorm":
        return base * 0.98**e
    if lr_mode == "LRfast":
        return base * 0.92**e
    return base / 0.06 * _piecewise_mobilenet(e)
