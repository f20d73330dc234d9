"""Training with the paper's LR recipes, on one device or many (torchrun)."""

from .loop import TrainConfig, save_checkpoint, train
from .schedules import LR_MODES, TrainError, lr_at, recipe

__all__ = ["LR_MODES", "TrainConfig", "TrainError", "lr_at", "recipe", "save_checkpoint", "train"]
