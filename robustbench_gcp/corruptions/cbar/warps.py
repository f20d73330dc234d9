"""Corruptions that resample the image at displaced positions: caustic refraction (light
through a rippled lens, ImageNet-C-bar), pinch and twirl and ripple (CIFAR-10-C-bar). Each
computes one source position per pixel for the whole batch and samples bilinearly, zero outside
the image, as the generators' ``bilinear_interpolation``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ...rng import Draws
from .. import ops
from .common import CBarCorruption, Params, coordinates, level, sample_zero_padded

_LUMA = (0.2126, 0.7152, 0.0722)


def caustics(size: int, time: Tensor, scale: Tensor) -> Tensor:
    """The generator's caustic noise kernel, (N, size, size) in [0, 1]: five rounds of a
    swirling iteration on the position tiled with period ``scale``."""
    rows, cols = coordinates(size, time.device, torch.float64)
    view = (-1, 1, 1)
    scale = scale.to(torch.float64).view(view)  # the tiles' seams are discontinuities: find them in float64
    p0 = (torch.remainder(rows / scale, 1) * 6.28318530718 - 250).float()
    p1 = (torch.remainder(cols / scale, 1) * 6.28318530718 - 250).float()
    time = time.float().view(view)
    i0, i1 = p0, p1
    light = torch.ones_like(p0 + p1)
    for n in range(5):
        t = time * (1.0 - 3.5 / (n + 1))
        i0, i1 = (p0 + torch.cos(t - i0) + torch.sin(t + i1), p1 + torch.sin(t - i1) + torch.cos(t + i0))
        length = torch.sqrt((p0 * 0.005 / torch.sin(i0 + t)) ** 2 + (p1 * 0.005 / torch.cos(i1 + t)) ** 2)
        light = light + 1.0 / length
    light = 1.17 - (light / 5.0) ** 1.4
    return (light.abs() ** 8.0).clamp_(0, 1)


def _caustic_sample(draws: Draws, size: int, value: float) -> Params:
    u = draws.uniform((2,), dtype=torch.float64)
    return {"time": 0.5 + 1.5 * u[:, 0], "size": (0.75 + 0.5 * u[:, 1]) * size}


def _caustic_render(images: Tensor, params: Params, value: float) -> Tensor:
    """Caustics, softened (Gaussian σ 1), are a lens whose luma gradient refracts each pixel's
    view (Snell with η = 4, scaled by the severity) and lights or shades it."""
    size = images.shape[-1]
    light = ops.gaussian_blur(caustics(size, params["time"], params["size"])[:, None], 1.0, mode="reflect")[:, 0]
    light = light * sum(_LUMA)  # the luma of a grey pixel
    padded = torch.nn.functional.pad(light, (1, 1, 1, 1))  # neighbours outside the image are black
    north, south = padded[:, 1:-1, :-2], padded[:, 1:-1, 2:]  # the generator's names: column −1 / +1
    west, east = padded[:, :-2, 1:-1], padded[:, 2:, 1:-1]  # row −1 / +1
    slope_row, slope_col = east - west, south - north
    norm = torch.sqrt(slope_row**2 + slope_col**2 + 1)
    a, b, c = slope_row / norm, slope_col / norm, 1 / norm
    sine = torch.sqrt(a * a + b * b)  # sin of the angle between the lens normal and the view
    bent = torch.asin(sine / 4.0)  # refraction with η = 4
    along = (torch.cos(bent) - torch.sin(bent) * c / sine.clamp_min(1e-30)) * level(value, 0.5 * size)
    along = torch.where(c >= 1 - 1e-3, torch.zeros_like(along), along)  # near-normal: passes straight
    shift_row, shift_col = torch.round(a * along, decimals=3), torch.round(b * along, decimals=3)
    rows, cols = coordinates(size, images.device, torch.float32)
    out = sample_zero_padded(images, rows + shift_row, cols + shift_col)
    lighting = ((north - south) + (east - west)) * level(value, 2.0)
    return (out + lighting[:, None].to(images.dtype)).clamp_(0, 1)


def _twirl_cells(size: int) -> int:
    """Cells per axis: 5 at the generator's ImageNet size (224 px), 3 otherwise."""
    return 5 if size == 224 else 3


def _twirl_sample(draws: Draws, size: int, value: float) -> Params:
    cells = _twirl_cells(size)
    signs = torch.where(draws.uniform((cells, cells)) < 0.5, 1.0, -1.0)
    return {"angles": signs.to(torch.float64) * level(value, math.pi / 2)}


def _twirl_render(images: Tensor, params: Params, value: float) -> Tensor:
    """In a grid of cells, every pixel inside a cell's inscribed circle looks further out from the
    centre (pinch) and is turned by an angle that fades to the rim (twirl). The generator warps
    the cells one after another, but every cell only reads pixels no earlier cell has changed,
    so one warp of the whole image is the same."""
    size = images.shape[-1]
    cells = _twirl_cells(size)
    step = size // cells
    radius = step / 2
    amount = level(value, 0.4) + 0.1
    rows, cols = coordinates(size, images.device, torch.float64)
    block_row = (rows // step).clamp(max=cells - 1).long()
    block_col = (cols // step).clamp(max=cells - 1).long()
    center_row, center_col = block_row * step + radius, block_col * step + radius
    dx, dy = rows - center_row, cols - center_col
    dist = torch.sqrt(dx * dx + dy * dy)
    inside = (dist <= radius) & (torch.round(dist, decimals=3) != 0) & (rows < cells * step) & (cols < cells * step)
    d = dist / radius
    stretch = torch.where(inside, torch.sin(math.pi / 2 * d) ** -amount, torch.ones_like(d))
    dx, dy = dx * stretch, dy * stretch
    angle = params["angles"][:, block_col, block_row] * (1 - d) ** 2  # angles[i, j]: column block i, row block j
    cos, sin = torch.cos(angle), torch.sin(angle)
    src_row = center_row + dx * cos - dy * sin
    src_col = center_col + dx * sin + dy * cos
    warped = sample_zero_padded(images, src_row.float(), src_col.float())
    return torch.where(inside[None], warped, images)


def _ripple_sample(draws: Draws, size: int, value: float) -> Params:
    u = draws.uniform((4,), dtype=torch.float64)
    return {"wavelengths": (0.1 + 0.2 * u[:, :2]) * size, "phases": 2 * math.pi * u[:, 2:]}


def _ripple_render(images: Tensor, params: Params, value: float) -> Tensor:
    """Rows and columns each shift by a sine of their own position."""
    size = images.shape[-1]
    amplitude = level(value, 0.025) * size
    rows, cols = coordinates(size, images.device, torch.float64)
    wavelengths, phases = params["wavelengths"][:, :, None, None], params["phases"][:, :, None, None]
    src_row = rows + amplitude * torch.sin(2 * math.pi * rows / wavelengths[:, 0] + phases[:, 0])
    src_col = cols + amplitude * torch.sin(2 * math.pi * cols / wavelengths[:, 1] + phases[:, 1])
    shape = (len(images), size, size)
    return sample_zero_padded(images, src_row.expand(shape).float(), src_col.expand(shape).float())


caustic_refraction = CBarCorruption(_caustic_sample, _caustic_render)
pinch_and_twirl = CBarCorruption(_twirl_sample, _twirl_render)
ripple = CBarCorruption(_ripple_sample, _ripple_render)
