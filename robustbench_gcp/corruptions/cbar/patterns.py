"""Procedural patterns added to or blended with the image: single-frequency greyscale, cocentric
sine waves and plasma noise (ImageNet-C-bar). Each pattern is a closed-form function of the
pixel position and a few drawn numbers, so it is computed for the whole batch at once."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ...rng import Draws
from .common import CBarCorruption, Params, add_clamped, coordinates, level


def _single_frequency_sample(draws: Draws, size: int, value: float) -> Params:
    u = draws.uniform((4,), dtype=torch.float64)
    magnitude = (2 * u[:, 0] - 1) * math.pi  # U(-π, π)
    other = (2 * u[:, 1] - 1) * magnitude.abs()  # U(-|m|, |m|)
    swap = u[:, 2] < 0.5  # a random permutation of the two
    freq = torch.stack((torch.where(swap, other, magnitude), torch.where(swap, magnitude, other)), dim=1)
    return {"freq": freq, "phase": 2 * math.pi * u[:, 3]}


def _single_frequency_render(images: Tensor, params: Params, value: float) -> Tensor:
    """sin(x·freq[0] + y·freq[1] + phase), x the column: separable by the angle-sum identity, so
    the sines are taken along one row and one column only."""
    size = images.shape[-1]
    index = torch.arange(size, device=images.device, dtype=torch.float64)
    across = index * params["freq"][:, :1] + params["phase"][:, None]  # (N, W)
    down = index * params["freq"][:, 1:]  # (N, H)
    wave = (torch.cos(down)[:, :, None] * torch.sin(across)[:, None, :]).to(images.dtype)
    wave += (torch.sin(down)[:, :, None] * torch.cos(across)[:, None, :]).to(images.dtype)
    return add_clamped(images, level(value, 196), wave[:, None])


def _sine_waves_sample(draws: Draws, size: int, value: float) -> Params:
    u = draws.uniform((5,), dtype=torch.float64)
    return {"offset": size * u[:, :2], "freq": 10 * u[:, 2], "amplitude": size / 10 * u[:, 3],
            "ring_width": size / 10 * u[:, 4]}


def _sine_waves_render(images: Tensor, params: Params, value: float) -> Tensor:
    size = images.shape[-1]
    index = torch.arange(size, device=images.device, dtype=torch.float32)
    offset = params["offset"].float()
    dx = (index - offset[:, :1])[:, None, :]  # offset[0] is the x (column) of the centre
    dy = (index - offset[:, 1:])[:, :, None]
    angle = torch.atan2(dx, dy).mul_(params["freq"].float()[:, None, None])
    width = params["ring_width"].float()[:, None, None]
    radius = torch.sqrt(dx * dx + dy * dy).add_(torch.sin_(angle).mul_(params["amplitude"].float()[:, None, None]))
    rings = torch.remainder(radius, width).div_(width).sub_(0.5)
    return add_clamped(images, level(value, 128), rings[:, None].to(images.dtype))


_MOST_ROUNDS = 6  # the generator draws 4, 5 or 6


def _plasma_sample(draws: Draws, size: int, value: float) -> Params:
    u = draws.uniform((3,), dtype=torch.float64)
    return {"time": 6 * math.pi * u[:, 0], "iterations": draws.randint(4, _MOST_ROUNDS + 1),
            "sharpness": 0.5 + 0.5 * u[:, 1], "scale": (0.075 + 0.125 * u[:, 2]) * size}


def _plasma_render(images: Tensor, params: Params, value: float) -> Tensor:
    """The generator's plasma kernel: a few rounds of a rotating sine feedback on the scaled
    position. Its fourth state variable starts at 0 and is only ever multiplied, so it stays 0
    and drops out. Images with fewer rounds stop updating after theirs."""
    rows, cols = coordinates(images.shape[-1], images.device, torch.float32)
    view = (-1, 1, 1)
    time = params["time"].float().view(view)
    scale = params["scale"].float().view(view)
    x, y = cols / scale, rows / scale
    i0 = i1 = i2 = torch.ones_like(time)
    for step in range(_MOST_ROUNDS):
        r0 = torch.cos(y * i0 + time / i1) / i2
        r1 = torch.sin(x * i0 + time / i1) / i2
        running = (params["iterations"].view(view) > step).float()
        x = x + running * (r0 - 0.3 * r1)
        y = y + running * (r1 + 0.3 * r0)
        i0 = torch.where(running > 0, i0 * 1.93, i0)
        i1 = torch.where(running > 0, i1 * 1.15, i1)
        i2 = torch.where(running > 0, i2 * (2.25 - params["sharpness"].float().view(view)), i2)
    red, blue = torch.sin(x - time), torch.sin(y + time)
    green = torch.sin((x + y + torch.sin(time)) * 0.5)
    plasma = torch.stack((red, green, blue), dim=1).to(images.dtype)
    intensity = level(value, 64)
    return (images * (1 - intensity / 255) + plasma * (intensity / 255)).clamp_(0, 1)


single_frequency_greyscale = CBarCorruption(_single_frequency_sample, _single_frequency_render)
cocentric_sine_waves = CBarCorruption(_sine_waves_sample, _sine_waves_render)
plasma_noise = CBarCorruption(_plasma_sample, _plasma_render)
