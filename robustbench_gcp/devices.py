"""Where tensors and models live: host uint8 batches to float on the device, channels_last on CUDA."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .errors import UsageError


def to_float_images(batch: Tensor, device: torch.device | str) -> Tensor:
    """uint8 (N, 3, H, W) on the host → float in [0, 1] on ``device``."""
    return batch.to(device, non_blocking=True).float().div_(255)


def prepare(model: nn.Module, device: torch.device) -> nn.Module:
    """The model on ``device``, channels_last on CUDA (faster convolutions there)."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


def as_model_input(batch: Tensor) -> Tensor:
    """A batch in the memory format ``prepare`` gives the model: channels_last on CUDA."""
    return batch.contiguous(memory_format=torch.channels_last) if batch.is_cuda else batch


def effective_precision(requested: str, device: torch.device) -> str:
    """bf16 autocast runs on CUDA only; the CPU always computes in float32."""
    return "bf16" if requested == "bf16" and device.type == "cuda" else "fp32"


def autocast(precision: str, device: torch.device) -> torch.autocast:
    """The autocast context of an effective precision (the GCP square root stays float32 inside)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def set_threads(count: int) -> None:
    """torch's intra-op threads (``--threads``): fewer than the cores on a machine other jobs share,
    where one thread per core for every process makes them all wait for each other."""
    if count < 1:
        raise UsageError(f"--threads {count}: pass 1 or more")
    torch.set_num_threads(count)
