"""Spatter (an extra corruption): water drops (severities 1–3) or mud (4–5)."""

from __future__ import annotations

from torch import Tensor

from . import ops
from .random import Draws

MUD = (63 / 255, 42 / 255, 20 / 255)


def spatter(x: Tensor, params: tuple, draws: Draws, protocol: str) -> Tensor:
    loc, scale, sigma, threshold, strength, mud = params
    h, w = x.shape[-2:]
    liquid = ops.gaussian_blur(draws.normal((1, h, w), mean=loc, std=scale, dtype=x.dtype), float(sigma))
    liquid = liquid.masked_fill(liquid < threshold, 0)
    if mud:
        mask = ops.gaussian_blur((liquid > threshold).to(x.dtype), float(strength))
        mask = mask.masked_fill(mask < 0.8, 0)
        color = x.new_tensor(MUD).view(1, 3, 1, 1) * mask
        return (x * (1 - mask) + color).clamp(0, 1)
    raise NotImplementedError
