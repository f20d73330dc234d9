"""Cubic B-spline resampling as SciPy's ``ndimage`` does it (order 3, mode ``constant``):
circular motion blur (21 rotations of the image averaged, CIFAR-10-C-bar) and transverse
chromatic aberration (each channel zoomed by its own factor, CIFAR-10-C-bar).

Both are fixed linear maps of each channel for a given size and severity, so they are built
once as matrices and applied to the whole batch in one product: SciPy's spline prefilter (the
inverse of the B-spline interpolation with mirrored borders) as a size × size matrix on each
axis, and the resampling as a (sparse) matrix over the pixels. Points that fall outside the
image are 0; neighbours of points inside are mirrored, as SciPy's ``constant`` mode does.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

from ...rng import Draws
from .common import CBarCorruption, Params, level, no_parameters

_ROTATIONS = 21  # the generator's number of rotated copies
_DENSE_PIXELS = 4096  # up to 64×64 px the whole map is one dense matrix, above it a sparse one


def cubic_bspline(t: np.ndarray) -> np.ndarray:
    """The cubic B-spline β³(t)."""
    t = np.abs(t)
    return np.where(t < 1, 2 / 3 - t**2 + t**3 / 2, np.where(t < 2, (2 - t) ** 3 / 6, 0.0))


def mirror(index: np.ndarray, size: int) -> np.ndarray:
    """Whole-sample symmetric extension (d c b | a b c d | c b a), SciPy's ``mirror``."""
    if size == 1:
        return np.zeros_like(index)
    period = 2 * size - 2
    index = np.mod(index, period)
    return np.where(index >= size, period - index, index)


@functools.lru_cache(maxsize=8)
def prefilter_matrix(size: int) -> np.ndarray:
    """SciPy's ``spline_filter1d`` (order 3, mirrored borders) as a (size, size) matrix."""
    interpolation = np.zeros((size, size))
    for offset in (-1, 0, 1):
        np.add.at(interpolation, (np.arange(size), mirror(np.arange(size) + offset, size)), cubic_bspline(offset))
    return np.linalg.inv(interpolation)


def _taps(coords: np.ndarray, size: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The 4 source indices (mirrored) and B-spline weights of every coordinate along one axis."""
    base = np.floor(coords).astype(np.int64) - 1
    return ([mirror(base + k, size) for k in range(4)], [cubic_bspline(coords - (base + k)) for k in range(4)])


def zoom_matrix(size: int, zoom: float) -> np.ndarray:
    """``scipy.ndimage.zoom(·, zoom, prefilter=False)`` along one axis, centre-cropped back to
    ``size`` as the generator crops: a (size, size) matrix."""
    out = int(round(size * zoom))
    coords = np.arange(out) * ((size - 1) / (out - 1) if out > 1 else 0.0)
    matrix = np.zeros((out, size))
    for index, weight in zip(*_taps(coords, size)):
        np.add.at(matrix, (np.arange(out), index), weight)
    edge = (out - size) // 2
    return matrix[edge : edge + size]


def _rotations(size: int, amount: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(target pixel, source pixel, weight) of the weighted mean of the 21 rotations by
    −amount … +amount degrees, applied to spline coefficients."""
    center = (size - 1) / 2
    rows, cols = np.meshgrid(np.arange(size, dtype=np.float64) - center, np.arange(size, dtype=np.float64) - center,
                             indexing="ij")
    steps = 2 * np.arange(_ROTATIONS) / (_ROTATIONS - 1) - 1
    factors = np.exp(-2 * steps**2)
    targets, sources, weights = [], [], []
    for step, factor in zip(steps, factors / factors.sum()):
        angle = np.deg2rad(step * amount)
        src_row = center + np.cos(angle) * rows + np.sin(angle) * cols
        src_col = center - np.sin(angle) * rows + np.cos(angle) * cols
        inside = ((src_row >= 0) & (src_row <= size - 1) & (src_col >= 0) & (src_col <= size - 1)).ravel()
        target = np.flatnonzero(inside)
        row_index, row_weight = _taps(src_row.ravel()[inside], size)
        col_index, col_weight = _taps(src_col.ravel()[inside], size)
        for ri, rw in zip(row_index, row_weight):
            for ci, cw in zip(col_index, col_weight):
                targets.append(target)
                sources.append(ri * size + ci)
                weights.append(factor * rw * cw)
    return np.concatenate(targets), np.concatenate(sources), np.concatenate(weights)


@functools.lru_cache(maxsize=8)
def _rotation_operator(size: int, amount: float, device: str) -> tuple[Tensor, Tensor | None]:
    """The blur as (operator, prefilter): a dense (HW, HW) map that includes the prefilter up to
    64×64 px, else a sparse CSR map over spline coefficients and the (size, size) prefilter."""
    targets, sources, weights = _rotations(size, amount)
    pixels = size * size
    prefilter = prefilter_matrix(size)
    if pixels <= _DENSE_PIXELS:
        dense = np.zeros((pixels, pixels))
        np.add.at(dense, (targets, sources), weights)
        full = dense @ np.kron(prefilter, prefilter)
        return torch.from_numpy(full).float().to(device), None
    operator = torch.sparse_coo_tensor(np.stack((targets, sources)), weights, (pixels, pixels)).coalesce()
    return operator.float().to_sparse_csr().to(device), torch.from_numpy(prefilter).float().to(device)


_ROWS = 96  # the dense map multiplies blocks of this many channel images


def _blocked_product(rows: Tensor, matrix: Tensor) -> Tensor:
    """``rows @ matrix`` in zero-padded blocks of ``_ROWS`` rows: every product has the same shape,
    so BLAS takes the same path and an image's result does not depend on the batch it is in."""
    count = rows.shape[0]
    padded = torch.nn.functional.pad(rows, (0, 0, 0, -count % _ROWS))
    return torch.cat([block @ matrix for block in padded.split(_ROWS)])[:count]


def _blur_render(images: Tensor, params: Params, value: float) -> Tensor:
    """The mean of 21 copies rotated by −amount … +amount degrees (amount = 1.5·value), with
    Gaussian weights exp(−2 s²) over s = −1 … 1, then 8-bit truncation as the generator saves."""
    n, channels, size, _ = images.shape
    operator, prefilter = _rotation_operator(size, level(value, 15), str(images.device))
    work = images.float()
    if prefilter is None:
        out = _blocked_product(work.reshape(n * channels, size * size), operator.T)
    else:
        coefficients = prefilter @ work @ prefilter.T
        out = (operator @ coefficients.reshape(n * channels, size * size).T).T
    return out.reshape(images.shape).clamp_(0, 1).to(images.dtype)


@functools.lru_cache(maxsize=16)
def _zoom_matrices(size: int, value: float, device: str) -> Tensor:
    """The three channel zooms of a severity, (3, size, size): factors 1, 1 + scale/2, 1 + scale."""
    scale = level(value, 0.5)
    return torch.from_numpy(np.stack([zoom_matrix(size, 1 + k * scale / 2) for k in range(3)])).float().to(device)


def _aberration_sample(draws: Draws, size: int, value: float) -> Params:
    """A random assignment of the three zoom factors to the channels (a permutation of 3)."""
    return {"order": torch.argsort(draws.uniform((3,)), dim=1)}


def _aberration_render(images: Tensor, params: Params, value: float) -> Tensor:
    """Each channel zoomed about the centre by its factor (cubic B-spline without prefilter,
    as the generator calls SciPy) and rounded to 8 bits (SciPy's uint8 output)."""
    matrices = _zoom_matrices(images.shape[-1], value, str(images.device))[params["order"]]  # (N, 3, size, size)
    out = matrices @ images.float() @ matrices.transpose(-1, -2)
    return (torch.floor(out * 255 + 0.5).clamp_(0, 255) / 255).to(images.dtype)


circular_motion_blur = CBarCorruption(no_parameters, _blur_render)
transverse_chromatic_abberation = CBarCorruption(_aberration_sample, _aberration_render)
