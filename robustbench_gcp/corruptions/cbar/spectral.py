"""Noise shaped in the Fourier domain: blue noise used as a mask (blue_noise_sample) and
brownish noise added per channel (brownish_noise). Both draw random phases, give them an
amplitude by distance from the centre of the spectrum and take the real part of the inverse
FFT, normalised to unit standard deviation, as the generators do; batched FFTs on any device."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from torch import Tensor

from ...rng import Draws
from .common import CBarCorruption, Params, add_clamped, level


@functools.lru_cache(maxsize=16)
def _spectrum_maps(size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Where the generator's rolled spectrum F takes its phase and amplitude, for the half
    spectrum (size, size // 2 + 1) at k and at −k: (phase index at k, at −k, distance at k, at −k).

    The phase index points into [the drawn half (size, size // 2), flattened; for odd sizes the
    drawn centre column (size // 2); one zero]. The generator's full phases are the half, then
    (odd sizes) the centre column mirrored around a zero, then the half flipped both ways; its
    amplitude is a function of the distance from (size/2, size/2); it rolls F by size // 2."""
    half = size // 2
    rows = torch.arange(size)[:, None]
    cols = torch.arange(size)[None, :]
    flipped = (size - 1 - rows) * half + (size - 1 - cols)
    phase = torch.where(cols < half, rows * half + cols, flipped)
    if size % 2:
        centre = size * half + torch.where(rows < half, rows, size - 1 - rows)
        centre = torch.where(rows == half, size * half + half, centre)  # the zero after the centre column
        phase = torch.where(cols == half, centre, phase)
    distance = torch.sqrt((cols - size / 2) ** 2 + (rows - size / 2) ** 2)
    k_row, k_col = torch.arange(size)[:, None], torch.arange(half + 1)[None, :]
    at = ((k_row - half) % size, (k_col - half) % size)  # the roll: F[k] = unrolled[k − size // 2]
    opposite = ((-k_row - half) % size, (-k_col - half) % size)
    return phase[at], phase[opposite], distance[at], distance[opposite]


def _phases(draws: Draws, size: int, channels: tuple[int, ...]) -> Params:
    """Half a spectrum of phases per noise map, and for odd sizes the centre column's half."""
    params = {"phases": draws.uniform((*channels, size, size // 2), 0, 2 * math.pi)}
    if size % 2:
        params["center_freq"] = draws.uniform((*channels, size // 2), 0, 2 * math.pi)
    return params


def spectral_noise(params: Params, amplitude: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor]:
    """The generators' ``gen_noise`` with amplitude(distance from the spectrum's centre): the
    real part of the inverse FFT of the rolled spectrum F, and its standard deviation (the
    generator divides by it), (..., size, size) and (..., 1, 1).

    That real part is the inverse FFT of F's Hermitian part (F(k) + conj F(−k)) / 2, which needs
    only half the spectrum (``irfft2``); the standard deviation follows from the same half
    spectrum by Parseval's theorem."""
    phases = params["phases"]
    size = phases.shape[-2]
    table = phases.flatten(-2)
    if size % 2:
        table = torch.cat((table, params["center_freq"], torch.zeros_like(table[..., :1])), dim=-1)
    at, opposite, near, far = (m.to(phases.device) for m in _spectrum_maps(size))
    lead = table.shape[:-1]
    phase_at = table.gather(-1, at.flatten().expand(*lead, -1)).view(*lead, *at.shape)
    phase_opposite = table.gather(-1, opposite.flatten().expand(*lead, -1)).view(*lead, *at.shape)
    weight_at, weight_opposite = amplitude(near).to(phases.dtype), amplitude(far).to(phases.dtype)
    real = (weight_at * torch.cos(phase_at)).add_(weight_opposite * torch.cos(phase_opposite)).mul_(0.5)
    imag = (weight_at * torch.sin(phase_at)).sub_(weight_opposite * torch.sin(phase_opposite)).mul_(0.5)
    noise = torch.fft.irfft2(torch.complex(real, imag), s=(size, size))
    columns = torch.full((at.shape[-1],), 2.0, dtype=torch.float64, device=phases.device)
    columns[0] = 1.0
    if size % 2 == 0:
        columns[-1] = 1.0  # the Nyquist column appears once in the full spectrum
    power = (real.double() ** 2 + imag.double() ** 2).mul_(columns).sum(dim=(-2, -1), keepdim=True)
    mean = real[..., :1, :1].double()
    deviation = (power / size**4 - (mean / size**2) ** 2).clamp_min(0).sqrt()
    return noise, deviation.to(noise.dtype)


def _blue_sample(draws: Draws, size: int, value: float) -> Params:
    return _phases(draws, size, ())


def _blue_render(images: Tensor, params: Params, value: float) -> Tensor:
    """Blue noise (amplitude ∝ frequency) above the threshold (in standard deviations) keeps the
    pixel; the rest turn black."""
    noise, deviation = spectral_noise(params, lambda distance: distance)
    dark = noise <= (level(value, 3.0) - 2.5) * deviation
    return images.masked_fill(dark[:, None], 0.0)


def _brownish_sample(draws: Draws, size: int, value: float) -> Params:
    return _phases(draws, size, (3,))


def _brownish_render(images: Tensor, params: Params, value: float) -> Tensor:
    """Brownish noise (amplitude 1 / (frequency² + 1)), one map per channel, added."""
    noise, deviation = spectral_noise(params, lambda distance: 1 / (distance**2 + 1))
    return add_clamped(images, level(value, 64), noise.div_(deviation).to(images.dtype))


blue_noise_sample = CBarCorruption(_blue_sample, _blue_render)
brownish_noise = CBarCorruption(_brownish_sample, _brownish_render)
