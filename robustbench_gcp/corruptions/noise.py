"""Noise corruptions: gaussian, shot (Poisson), impulse (salt and pepper), speckle."""

from __future__ import annotations

import torch
from torch import Tensor

from ..rng import Draws


def gaussian_noise(x: Tensor, sigma: float, draws: Draws, protocol: str) -> Tensor:
    return (x + draws.normal(tuple(x.shape[1:]), std=sigma, dtype=x.dtype)).clamp(0, 1)


def shot_noise(x: Tensor, rate: float, draws: Draws, protocol: str) -> Tensor:
    return (draws.poisson(x * rate) / rate).clamp(0, 1)


def impulse_noise(x: Tensor, amount: float, draws: Draws, protocol: str) -> Tensor:
    """scikit-image's ``random_noise(mode='s&p')``: each value flips with p=amount, half to 1.

    One uniform draw decides both: below amount/2 salt, between amount/2 and amount pepper.
    """
    u = draws.uniform(tuple(x.shape[1:]), dtype=x.dtype)
    return torch.where(u <= amount, (u <= amount / 2).to(x.dtype), x)


def speckle_noise(x: Tensor, sigma: float, draws: Draws, protocol: str) -> Tensor:
    return (x + x * draws.normal(tuple(x.shape[1:]), std=sigma, dtype=x.dtype)).clamp(0, 1)
