"""Star-shaped light: sparkles (five stars blended towards white) and inverse sparkles (the image
seen through one star on a white page). A star's brightness at a pixel comes from its angle
(interpolated between random ray lengths) and its distance from the centre; every image draws
the most rays a star can have and uses its own count of them, so draws keep a fixed shape."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ...rng import Draws
from .common import CBarCorruption, Params, level

_RAYS = (50, 200)  # the generators' randint(50, 200): 50 to 199 rays
_STARS = 5


def star_shares(size: int, center: Tensor, rays: Tensor, ray_lengths: Tensor, exponent: float) -> Tensor:
    """Per pixel, the share f in [0, 1] of the star's colour (the generators' sparkle kernel).

    ``center`` (N, 2) is (row, column), ``rays`` (N,) the number of rays, ``ray_lengths`` (N, R)
    with the first ``rays`` used; returns (N, size, size). float32: the kernel is continuous
    across ray boundaries, so rounding there moves a value by a rounding error only."""
    index = torch.arange(size, device=center.device, dtype=torch.float32)
    center = center.float()
    d_row = (index - center[:, :1])[:, :, None]
    d_col = (index - center[:, 1:])[:, None, :]
    distance2 = d_row * d_row + d_col * d_col
    count = rays.float()[:, None, None]
    # (angle + π) / 2π · rays ≥ 0, the ray it falls in and its fraction of the way to the next
    position = torch.atan2(d_col, d_row).mul_(count / (2 * math.pi)).add_(count / 2)
    ray = position.long().view(len(center), -1)  # int() of a non-negative number: its floor
    fraction = position.frac_()
    # per ray k: its length and the step to ray k + 1, the ray count wrapping to 0 (k ≤ rays);
    # one gather of both, packed as a complex number
    wrapped = torch.arange(ray_lengths.shape[1] + 2, device=center.device) % rays[:, None]
    lengths = ray_lengths.float().gather(1, wrapped)
    table = torch.complex(lengths[:, :-1], lengths[:, 1:] - lengths[:, :-1])
    found = table.gather(1, ray).view_as(fraction)
    length = torch.addcmul(found.real, fraction, found.imag)
    gain = length.square_().div_(distance2.add_(1e-4))
    if exponent != 1:
        gain = gain.pow_(exponent)
    # 1 − (fraction − 0.5)² = fraction · (1 − fraction) + 0.75
    return torch.addcmul(torch.full_like(fraction, 0.75), fraction, 1 - fraction).mul_(gain).clamp_(0, 1)

def _sparkles_sample(draws: Draws, size: int, value: float) -> Params:
    radius = level(value, 0.1) * size
    centers = draws.uniform((_STARS, 2), 0, size, dtype=torch.float64)
    rays = draws.randint(*_RAYS, (_STARS,))
    lengths = draws.normal((_STARS, _RAYS[1] - 1), radius, 0.25 * radius, dtype=torch.float64).clamp_(min=1)
    return {"centers": centers, "nrays": rays, "ray_lengths": lengths}


def _sparkles_render(images: Tensor, params: Params, value: float) -> Tensor:
    """Each star in turn moves the image towards white by its share."""
    dark = None  # the share of (1 − pixel) that survives every star: x + f·(1 − x) = 1 − (1 − x)(1 − f)
    for star in range(_STARS):
        share = star_shares(images.shape[-1], params["centers"][:, star], params["nrays"][:, star],
                            params["ray_lengths"][:, star], 1.0)
        dark = 1 - share if dark is None else dark.mul_(1 - share)
    dark = dark[:, None].to(images.dtype)
    return torch.addcmul(1 - dark, images, dark).clamp_(0, 1)


def _inverse_sample(draws: Draws, size: int, value: float) -> Params:
    radius = 0.25 * size
    center = draws.uniform((2,), 0.25 * size, 0.75 * size, dtype=torch.float64)
    rays = draws.randint(*_RAYS)
    lengths = draws.normal((_RAYS[1] - 1,), radius, 0.25 * radius, dtype=torch.float64)
    return {"center": center, "rays": rays, "ray_lengths": lengths}


def _inverse_render(images: Tensor, params: Params, value: float) -> Tensor:
    """White everywhere but where the star shines: the image shows through by its share. The
    generator's ``amount`` = 100 − 6.5·value gives the exponent (100 − amount) / 50."""
    share = star_shares(images.shape[-1], params["center"], params["rays"], params["ray_lengths"],
                        level(value, 65) / 50)[:, None].to(images.dtype)
    return torch.addcmul(1 - share, images, share).clamp_(0, 1)  # 1 + f·(x − 1)


sparkles = CBarCorruption(_sparkles_sample, _sparkles_render)
inverse_sparkles = CBarCorruption(_inverse_sample, _inverse_render)
