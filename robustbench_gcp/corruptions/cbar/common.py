"""What the C-bar corruptions share: the generator's severity scale, pixel coordinates, and the
split of every corruption into drawing its parameters and rendering them.

The generators (Mintun et al. 2021) draw each image's parameters, then compute its pixels from
them. Keeping the two apart here lets every image draw from its own stream (the draws never
depend on the pixels) and lets the tests render the very parameters drawn here with a
per-image NumPy version of the published definitions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ...rng import Draws

Params = dict[str, Tensor]


def level(value: float, maximum: float) -> float:
    """The generators' ``float_parameter``: a severity value on their 0–10 scale, scaled to ``maximum``."""
    return value * maximum / 10


def coordinates(size: int, device: torch.device, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """Row and column index of every pixel of a ``size``×``size`` image, shaped (size, 1) and (1, size)."""
    index = torch.arange(size, device=device, dtype=dtype)
    return index[:, None], index[None, :]


def sample_zero_padded(images: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Bilinear samples of every image at per-pixel (row, column) coordinates (N, H, W), zero
    outside the image: the generators' ``bilinear_interpolation``."""
    h, w = images.shape[-2:]
    grid = torch.stack((2 * cols / max(w - 1, 1) - 1, 2 * rows / max(h - 1, 1) - 1), dim=-1)
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)


def add_clamped(images: Tensor, amount: float, pattern: Tensor) -> Tensor:
    """``clip(image + amount·pattern, 0, 255)`` of the generators, with ``amount`` in 0–255 levels."""
    return torch.add(images, pattern, alpha=float(amount) / 255).clamp_(0, 1)


@dataclass(frozen=True)
class CBarCorruption:
    """One C-bar corruption: ``sample(draws, size, value)`` draws every image's parameters,
    ``render(images, params, value)`` computes the corrupted images from them. ``images`` are
    float (N, 3, size, size) in [0, 1]; ``value`` is the generator's severity value."""

    sample: Callable[[Draws, int, float], Params]
    render: Callable[[Tensor, Params, float], Tensor]

    def __call__(self, images: Tensor, value: float, draws: Draws, protocol: str) -> Tensor:
        return self.apply(images, value, draws, lambda out: out)

    def apply(self, images: Tensor, value: float, draws: Draws, finish: Callable[[Tensor], Tensor]) -> Tensor:
        """``finish(render(images, sample(...)))``: every image draws from the whole batch's draws,
        and on the CPU a few images are rendered and finished at a time, which keeps the per-pixel
        work in the caches (images are independent, so the result is the same)."""
        params = self.sample(draws, images.shape[-1], value)
        step = cpu_chunk(images)
        if images.device.type != "cpu" or len(images) <= step:
            return finish(self.render(images, params, value))
        return torch.cat([finish(self.render(images[i : i + step], {k: v[i : i + step] for k, v in params.items()},
                                             value)) for i in range(0, len(images), step)])


_CPU_CHUNK_VALUES = 600_000  # about four 224-px images: their per-pixel maps stay in the CPU's caches


def cpu_chunk(images: Tensor) -> int:
    """How many images the CPU renders at once."""
    return max(1, _CPU_CHUNK_VALUES // max(1, images[0].numel()))


def no_parameters(draws: Draws, size: int, value: float) -> Params:
    """The sampler of a corruption that draws nothing (circular motion blur)."""
    return {}
