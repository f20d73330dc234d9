"""Noise corruptions: gaussian, shot (Poisson), impulse (salt and pepper), speckle."""

from __future__ import annotations

from torch import Tensor

from .random import Draws


def gaussian_noise(x: Tensor, sigma: float, draws: Draws, protocol: str) -> Tensor:
    return (x + draws.normal(tuple(x.shape[1:]), std=sigma, dtype=x.dtype)).clamp(0, 1)


def shot_noise(x: Tensor, rate: float, draws: Draws, protocol: str) -> Tensor:
    return (draws.poisson(x * rate) / rate).clamp(0, 1)


def impulse_noise(x: Tensor, amount: float, draws: Draws, protocol: str) -> Tensor:
    """scikit-image's ``random_noise(mode='s&p')``: each value flips with p=amount, half to 1."""
    shape = tuple(x.shape[1:])
    flipped = draws.uniform(shape, dtype=x.dtype) <= amount
    salted = draws.uniform(shape, dtype=x.dtype) <= 0.5
    return x.masked_fill(flipped & salted, 1.0).masked_fill(flipped & ~salted, 0.0)


def speckle_noise(x: Tensor, sigma: float, draws: Draws, protocol: str) -> Tensor:
    return (x + x * draws.normal(tuple(x.shape[1:]), std=sigma, dtype=x.dtype)).clamp(0, 1)
