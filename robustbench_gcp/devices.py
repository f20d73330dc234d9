"""Where tensors and models live: host uint8 batches to float on the device, channels_last on CUDA."""

from __future__ import annotations

import os

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


def idle_cores() -> tuple[int, int]:
    """(cores this process may use, of them those not kept busy by other processes by the 1-minute
    load average, at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        busy = round(os.getloadavg()[0])
    except OSError:  # no load average on this platform
        busy = 0
    return cores, max(1, cores - busy)


def set_threads(count: int | None) -> int:
    """torch's intra-op threads: ``count`` (``--threads``), else the idle cores; returns the number
    taken. On a shared machine one thread per core in every process makes them all spin against each
    other (a demo measured 8× slower under a load of 6 on 2 cores); the counts do not depend on the
    number of threads."""
    if count is not None and count < 1:
        raise UsageError(f"--threads {count}: pass 1 or more")
    if count is None:
        count = min(torch.get_num_threads(), idle_cores()[1])
    torch.set_num_threads(count)
    return count
