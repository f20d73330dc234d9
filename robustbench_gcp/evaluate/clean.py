"""Clean top-1/top-5 counts of a model on a dataset of uint8 images."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset


@dataclass
class Counts:
    """Counts, not percentages, so shards and resumed runs add up exactly."""

    n: int = 0
    top1_errors: int = 0
    top5_errors: int = 0

    def add(self, logits: Tensor, labels: Tensor) -> None:
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top == labels[:, None]
        self.n += labels.numel()
        self.top1_errors += int((~hits[:, 0]).sum())
        self.top5_errors += int((~hits.any(dim=1)).sum())

    @property
    def top1_accuracy(self) -> float:
        return 100.0 * (1 - self.top1_errors / self.n) if self.n else float("nan")


def to_float_images(batch: Tensor, device: torch.device | str) -> Tensor:
    """uint8 (N, 3, H, W) on the host → float in [0, 1] on ``device``."""
    return batch.to(device, non_blocking=True).float().div_(255)


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
