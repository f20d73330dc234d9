"""Blur corruptions: defocus, glass, motion, zoom, gaussian."""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

from ..rng import Draws
from . import ops


def gaussian_blur(x: Tensor, sigma: float, draws: Draws, protocol: str) -> Tensor:
    return ops.gaussian_blur(x, float(sigma), mode="nearest").clamp(0, 1)


def disk_kernel(radius: float, alias_blur: float) -> Tensor:
    """The reference's anti-aliased disk: a binary disk, normalised, then a small Gaussian blur."""
    half = 8 if radius <= 8 else int(radius)
    ksize = 3 if radius <= 8 else 5
    axis = torch.arange(-half, half + 1, dtype=torch.float32)
    disk = ((axis[None] ** 2 + axis[:, None] ** 2) <= radius**2).float()
    disk = disk / disk.sum()
    taps = ops.opencv_gaussian_kernel(ksize, alias_blur).float()
    return ops.filter2d(disk[None, None], torch.outer(taps, taps))[0, 0]


def defocus_blur(x: Tensor, params: tuple[float, float], draws: Draws, protocol: str) -> Tensor:
    radius, alias_blur = params
    return ops.filter2d(x, ops.to_device(disk_kernel(radius, alias_blur), x.device)).clamp(0, 1)


@functools.lru_cache(maxsize=None)
def glass_source_offsets(delta: int, passes: int, size: int = 96) -> tuple[Tensor, Tensor]:
    """Where a pixel's final value comes from after the reference's sequential "swaps".

    The reference's ``x[h, w], x[h2, w2] = x[h2, w2], x[h, w]`` acts on pixel views of an
    (H, W, 3) array, so it copies x[h2, w2] into x[h, w] and leaves x[h2, w2] as it was: values
    travel along chains of copies. This runs that loop once on an index grid (seeded, so the
    table is fixed) and returns the distinct source offsets (K, 2) of interior pixels and their
    cumulative probabilities (K,).
    """
    rng = np.random.RandomState(0)
    grid = np.arange(size * size).reshape(size, size)
    for _ in range(passes):
        for h in range(size - delta, delta, -1):  # the reference's sequential order
            for w in range(size - delta, delta, -1):
                dx, dy = rng.randint(-delta, delta, size=2)
                grid[h, w] = grid[h + dy, w + dx]
    margin = (delta + 1) * (passes + 1)
    inner = grid[margin:-margin, margin:-margin]
    rows, cols = np.divmod(inner, size)
    offsets = np.stack([rows - np.arange(margin, size - margin)[:, None], cols - np.arange(margin, size - margin)], -1)
    unique, counts = np.unique(offsets.reshape(-1, 2), axis=0, return_counts=True)
    cumulative = np.cumsum(counts) / counts.sum()
    return torch.from_numpy(unique), torch.from_numpy(cumulative)


def glass_blur(x: Tensor, params: tuple[float, int, int], draws: Draws, protocol: str) -> Tensor:
    """Blur, locally shuffle pixels, blur again.

    The reference moves pixels one after another in reverse raster order (a sequential loop in
    which values travel along chains of copies). Here every pixel of the shuffled region takes,
    in one batched gather, the value at a source offset drawn from the distribution that loop
    produces (``glass_source_offsets``): the same displacement statistics per pixel, drawn
    independently for neighbouring pixels.
    """
    sigma, delta, passes = params
    n, c, h, w = x.shape
    blurred = ops.truncate_to_uint8_levels(ops.gaussian_blur(x, float(sigma), mode="nearest"))
    offsets, cumulative = glass_source_offsets(delta, passes)
    choice = torch.searchsorted(ops.to_device(cumulative, x.device), draws.uniform((h, w), dtype=torch.float64))
    choice = choice.clamp(max=len(offsets) - 1)
    picked = ops.to_device(offsets, x.device)[choice]  # (n, h, w, 2)
    rows = torch.arange(h, device=x.device)[:, None]
    cols = torch.arange(w, device=x.device)[None, :]
    touched = ((rows >= 1) & (rows <= h - 1)) & ((cols >= 1) & (cols <= w - 1))
    source_rows = torch.where(touched, rows + picked[..., 0], rows).clamp(0, h - 1)
    source_cols = torch.where(touched, cols + picked[..., 1], cols).clamp(0, w - 1)
    source = (source_rows * w + source_cols).reshape(n, 1, h * w).expand(n, c, h * w)
    shuffled = blurred.reshape(n, c, h * w).gather(2, source).reshape(n, c, h, w)
    return ops.gaussian_blur(shuffled, float(sigma), mode="nearest").clamp(0, 1)


def motion_blur(x: Tensor, params: tuple[int, float], draws: Draws, protocol: str) -> Tensor:
    radius, sigma = params
    angles = draws.uniform((), -45.0, 45.0, dtype=torch.float64)
    return ops.motion_blur(x, radius, sigma, angles).clamp(0, 1)


def zoom_blur(x: Tensor, zooms: tuple[float, ...], draws: Draws, protocol: str) -> Tensor:
    trim = "top_left" if protocol == "imagecorruptions" else "center"
    total = x.clone()
    for zoom in zooms:  # over zoom factors (≤ 26), each a batched resampling
        total += ops.clipped_zoom(x, zoom, trim)
    return (total / (len(zooms) + 1)).clamp(0, 1)
