"""Clean top-1/top-5 counts of a model on a dataset of uint8 images."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..devices import to_float_images
from ..metrics import Counts


@torch.inference_mode()
def evaluate_clean(
    model: nn.Module, dataset: Dataset, *, batch_size: int = 256, workers: int = 0, device: str = "cpu"
) -> Counts:
    """Top-1/top-5 error counts of ``model`` (eval mode) on ``dataset`` of (uint8 image, label)."""
    model.eval().to(device)
    counts = Counts()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, pin_memory=device != "cpu")
    for images, labels in loader:
        counts.add(model(to_float_images(images, device)), labels.to(device))
    return counts
