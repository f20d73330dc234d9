"""Perlin noise (ImageNet-C-bar): the generator's turbulence (five octaves of classic 2-D
gradient noise, absolute values, each half as strong as the last) blended with the image.

Every image draws its own 256 gradients and its own permutation table, shuffled exactly as the
generator shuffles (256 swaps with partners drawn from all 256 entries, which is not a uniform
shuffle); the noise is then evaluated for all images and pixels at once.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ...rng import Draws
from .common import CBarCorruption, Params, level

_TABLE = 256
_OCTAVES = (1, 2, 4, 8, 16)  # the generator's turbulence(·, 16): f = 1, 2, 4, … while f ≤ 16


def generator_shuffle(partners: Tensor) -> Tensor:
    """The permutation the generator makes: start from 0 … 255 and for i = 255 … 0 swap entry i
    with entry ``partners[:, 255 - i]``. Sequential, so it runs on the host: (N, 256) in and out."""
    table = np.tile(np.arange(_TABLE), (len(partners), 1))
    chosen = partners.cpu().numpy()
    rows = np.arange(len(partners))
    for step, i in enumerate(range(_TABLE - 1, -1, -1)):
        j = chosen[:, step]
        held = table[:, i].copy()
        table[:, i] = table[rows, j]
        table[rows, j] = held
    return torch.from_numpy(table).to(partners.device)


def _sample(draws: Draws, size: int, value: float) -> Params:
    """Gradients: integer vectors in [−256, 256)² / 256, normalised (the generator divides a
    zero vector by zero, a 1-in-262,144 draw; here it stays zero)."""
    raw = (draws.randint(0, 2 * _TABLE, (_TABLE, 2)) - _TABLE).to(torch.float64) / _TABLE
    norm = raw.norm(dim=-1, keepdim=True)
    gradients = torch.where(norm > 0, raw / norm.clamp_min(1e-300), torch.zeros_like(raw))
    return {"gradients": gradients, "permutation": generator_shuffle(draws.randint(0, _TABLE, (_TABLE,)))}


def _s_curve(t: Tensor) -> Tensor:
    return t * t * (3.0 - 2.0 * t)


def gradient_noise(x: Tensor, y: Tensor, permutation: Tensor, gradients: Tensor) -> Tensor:
    """The generator's ``noise(x, y)`` for x (H, 1) and y (1, W) ≥ 0 and every image's tables:
    (N, H, W). The generator adds 4096 before taking the lattice cell; 4096 is a multiple of
    the table size, so the cell and the fraction are those of x and y themselves. A corner's
    gradient is gradients[permutation[(permutation[cell_x] + cell_y) % 256]]: the two last
    lookups are one table per image, gradients[permutation]."""
    n = len(permutation)
    cell_x, cell_y = torch.floor(x), torch.floor(y)
    rx0, ry0 = x - cell_x, y - cell_y
    rx1, ry1 = rx0 - 1.0, ry0 - 1.0
    bx0, by0 = cell_x.long() & (_TABLE - 1), cell_y.long() & (_TABLE - 1)
    bx1, by1 = (bx0 + 1) & (_TABLE - 1), (by0 + 1) & (_TABLE - 1)
    i, j = permutation[:, bx0[:, 0]][:, :, None], permutation[:, bx1[:, 0]][:, :, None]  # (N, H, 1)
    corner_x = gradients[..., 0].gather(1, permutation)  # (N, 256): the gradient of table entry k
    corner_y = gradients[..., 1].gather(1, permutation)

    def corner(row_entry: Tensor, column: Tensor, dx: Tensor, dy: Tensor) -> Tensor:
        index = ((row_entry + column) & (_TABLE - 1)).view(n, -1)
        shape = (n, x.shape[0], y.shape[1])
        return corner_x.gather(1, index).view(shape).mul_(dx).add_(corner_y.gather(1, index).view(shape).mul_(dy))

    sx, sy = _s_curve(rx0), _s_curve(ry0)
    a = torch.lerp(corner(i, by0, rx0, ry0), corner(j, by0, rx1, ry0), sx)
    b = torch.lerp(corner(i, by1, rx0, ry1), corner(j, by1, rx1, ry1), sx)
    return torch.lerp(a, b, sy).mul_(1.5)


def _render(images: Tensor, params: Params, value: float) -> Tensor:
    """Turbulence at the pixel position scaled by 32·size/224 (the generator's point · m, so its
    noise ``x`` is the row), mapped by 0.5·t + 0.5 into [0, 1] and blended by alpha = 0.05·value.
    float32: the noise is continuous across lattice cells, so rounding at a cell edge moves a
    value by a rounding error only."""
    size = images.shape[-1]
    index = torch.arange(size, device=images.device, dtype=torch.float32)[:, None]
    scale = 32 * size / 224
    gradients = params["gradients"].float()
    turbulence = torch.zeros(len(images), size, size, device=images.device)
    for f in _OCTAVES:
        position = index * (f / scale)
        turbulence += gradient_noise(position, position.T, params["permutation"], gradients).abs_().div_(f)
    noise = turbulence.mul_(0.5).add_(0.5).clamp_(0, 1)[:, None].to(images.dtype)
    alpha = level(value, 0.5)
    return torch.lerp(images, noise, alpha).clamp_(0, 1)


perlin_noise = CBarCorruption(_sample, _render)
