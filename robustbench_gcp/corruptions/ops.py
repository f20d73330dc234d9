"""Batched tensor primitives that reproduce what the reference corruptions get from SciPy,
scikit-image, OpenCV and Pillow. All work on (N, C, H, W) float tensors on any device.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F
from torch import Tensor

from ..rng import Draws
from .jpeg import jpeg_round_trip_exact

# RGB → gray weights of OpenCV's COLOR_RGB2GRAY.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def to_device(t: Tensor, device: torch.device, dtype: torch.dtype | None = None) -> Tensor:
    """A small host tensor (a kernel, a table) on ``device`` without waiting for the device: a
    copy from pageable memory is staged at once, so the host keeps queueing work on CUDA."""
    return t.to(device=device, dtype=dtype, non_blocking=True)


def border_index(size: int, before: int, after: int, mode: str, device: torch.device) -> Tensor:
    """Source indices of a padded axis, for any pad width (also wider than the axis).

    Modes follow SciPy: ``nearest`` (edge), ``reflect`` (half-sample symmetric, d c b a | a b c d)
    and ``mirror`` (whole-sample symmetric, d c b | a b c d, OpenCV's BORDER_REFLECT_101).
    """
    index = torch.arange(-before, size + after, device=device)
    if mode == "nearest" or size == 1:
        return index.clamp(0, size - 1)
    if mode == "reflect":
        index = index.remainder(2 * size)
        return torch.where(index >= size, 2 * size - 1 - index, index)
    if mode == "mirror":
        index = index.remainder(2 * size - 2)
        return torch.where(index >= size, 2 * size - 2 - index, index)
    raise ValueError(f"unknown border mode {mode!r}")


def pad2d(x: Tensor, pad_h: int, pad_w: int, mode: str) -> Tensor:
    """Pad the last two axes by ``pad_h`` / ``pad_w`` on each side with a SciPy border mode."""
    rows = border_index(x.shape[-2], pad_h, pad_h, mode, x.device)
    cols = border_index(x.shape[-1], pad_w, pad_w, mode, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


@functools.lru_cache(maxsize=64)
def _gaussian_taps(sigma: float, truncate: float) -> tuple[float, ...]:
    if sigma == 0:  # SciPy leaves an axis with sigma 0 unfiltered
        return (1.0,)
    radius = int(truncate * sigma + 0.5)
    taps = [math.exp(-0.5 * (i / sigma) ** 2) for i in range(-radius, radius + 1)]
    total = sum(taps)
    return tuple(t / total for t in taps)


# Up to this many taps, shifted multiply-adds beat the FFT (measured on CPUs).
_DIRECT_TAPS = 31


def _correlate_axis(x: Tensor, taps: Tensor, dim: int, mode: str) -> Tensor:
    """Correlate along one axis: shifted multiply-adds for short kernels, the FFT for long ones
    (``taps`` on the host: the short ones become Python floats without a device round trip)."""
    radius = taps.numel() // 2
    index = border_index(x.shape[dim], radius, radius, mode, x.device)
    padded = x.index_select(dim, index)
    if taps.numel() <= _DIRECT_TAPS:
        weights = taps.tolist()
        out = padded.narrow(dim, 0, x.shape[dim]) * weights[0]
        for offset, weight in enumerate(weights[1:], start=1):
            out.add_(padded.narrow(dim, offset, x.shape[dim]), alpha=weight)
        return out
    length = padded.shape[dim]
    spectrum = torch.fft.rfft(padded, n=length, dim=dim)
    kernel = torch.fft.rfft(to_device(taps, x.device, x.dtype).flip(0), n=length)
    shape = [1] * x.dim()
    shape[dim] = kernel.numel()
    out = torch.fft.irfft(spectrum * kernel.view(shape), n=length, dim=dim)
    return out.narrow(dim, taps.numel() - 1, x.shape[dim])


def separable_filter(x: Tensor, taps_h: Tensor, taps_w: Tensor, mode: str) -> Tensor:
    """Correlate every channel with the outer product of two odd-length 1-D kernels (host tensors)."""
    return _correlate_axis(_correlate_axis(x, taps_h, -2, mode), taps_w, -1, mode)


def gaussian_blur(
    x: Tensor, sigma: float | tuple[float, float], mode: str = "nearest", truncate: float = 4.0
) -> Tensor:
    """``scipy.ndimage.gaussian_filter`` over H and W (what ``skimage.filters.gaussian`` runs)."""
    sigma_h, sigma_w = sigma if isinstance(sigma, tuple) else (sigma, sigma)
    taps = [torch.tensor(_gaussian_taps(float(s), truncate), dtype=torch.float64) for s in (sigma_h, sigma_w)]
    return separable_filter(x, taps[0], taps[1], mode)


def filter2d(x: Tensor, kernel: Tensor, mode: str = "mirror") -> Tensor:
    """``cv2.filter2D`` (correlation; BORDER_REFLECT_101 by default) of every channel, via the FFT.

    ``kernel`` is (kh, kw) for all images or (N, kh, kw) for one kernel per image; odd sizes.
    """
    kh, kw = kernel.shape[-2:]
    padded = pad2d(x, kh // 2, kw // 2, mode)
    size = padded.shape[-2:]
    spectrum = torch.fft.rfft2(padded, s=size)
    kernels = torch.fft.rfft2(kernel.to(x.dtype).flip(-1, -2), s=size)
    if kernels.dim() == 3:
        kernels = kernels[:, None]
    out = torch.fft.irfft2(spectrum * kernels, s=size)
    return out[..., kh - 1 : kh - 1 + x.shape[-2], kw - 1 : kw - 1 + x.shape[-1]]


def opencv_gaussian_kernel(size: int, sigma: float) -> Tensor:
    """``cv2.getGaussianKernel`` for sigma > 0 (float64)."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    taps = torch.exp(-(offsets**2) / (2 * sigma**2))
    return taps / taps.sum()


def gray(x: Tensor) -> Tensor:
    """OpenCV RGB → gray, (N, 3, H, W) → (N, 1, H, W)."""
    weights = to_device(torch.tensor(GRAY_WEIGHTS, dtype=x.dtype), x.device).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def motion_blur(x: Tensor, radius: int, sigma: float, angles_deg: Tensor) -> Tensor:
    """ImageMagick's motion blur, as the reference re-implements it, with one angle per image.

    A kernel of width 2·radius+1 with Gaussian weights along a line at ``angle``; pixels outside
    the image repeat the edge. Taps whose offset leaves the image end the kernel, as in the
    reference (they only occur on images smaller than the kernel). Each image's taps become one
    sparse 2-D kernel, applied to the whole batch at once through the FFT.
    """
    n, _, h, w = x.shape
    width = 2 * radius + 1
    steps = torch.arange(width, dtype=torch.float64, device=x.device)
    weights = torch.exp(-(steps**2) / (2 * sigma**2))
    weights = weights / weights.sum()
    angle = torch.deg2rad(angles_deg.to(device=x.device, dtype=torch.float64))[:, None]
    # point = width·(sin, cos); the reference shifts by −ceil(i·point/|point| − 0.5), i.e. samples at +ceil(…)
    rows = torch.ceil(steps * torch.sin(angle) - 0.5).long()
    cols = torch.ceil(steps * torch.cos(angle) - 0.5).long()
    inside = ((rows.abs() < h) & (cols.abs() < w)).long().cumprod(dim=1)
    extent = width
    kernels = torch.zeros(n, (2 * extent + 1) * (2 * extent + 1), dtype=torch.float64, device=x.device)
    position = (rows + extent) * (2 * extent + 1) + (cols + extent)
    kernels.scatter_add_(1, position, weights[None] * inside)
    return filter2d(x, kernels.view(n, 2 * extent + 1, 2 * extent + 1), mode="nearest")


def scipy_zoom_grid(size: int, zoom: float, device: torch.device) -> tuple[int, int, Tensor]:
    """Crop and sampling positions of the reference ``clipped_zoom`` along one axis.

    Returns (crop start, zoomed length, source coordinates of every zoomed pixel in the
    uncropped axis), following ``scipy.ndimage.zoom(order=1)`` (grid_mode=False).
    """
    crop = int(math.ceil(size / zoom))
    start = (size - crop) // 2
    out = int(round(crop * zoom))
    scale = (crop - 1) / (out - 1) if out > 1 else 0.0
    coords = start + torch.arange(out, dtype=torch.float64, device=device) * scale
    return start, out, coords


def linear_resample(x: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Bilinear samples of every image at the outer product of row and column coordinates."""
    h, w = x.shape[-2:]
    grid_y = (2 * rows / max(h - 1, 1) - 1).to(x.dtype)
    grid_x = (2 * cols / max(w - 1, 1) - 1).to(x.dtype)
    grid = torch.stack(torch.meshgrid(grid_x, grid_y, indexing="xy"), dim=-1)
    grid = grid.unsqueeze(0).expand(x.shape[0], -1, -1, -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def clipped_zoom(x: Tensor, zoom: float, trim: str) -> Tensor:
    """Zoom into the center by ``zoom`` (linear interpolation), as the reference ``clipped_zoom``.

    ``trim="top_left"`` keeps the zoomed map's first H×W pixels (imagecorruptions),
    ``trim="center"`` its centered H×W window (the ImageNet-C / CIFAR-10-C generators),
    ``trim="none"`` the whole zoomed map.
    """
    h, w = x.shape[-2:]
    _, out_h, rows = scipy_zoom_grid(h, zoom, x.device)
    _, out_w, cols = scipy_zoom_grid(w, zoom, x.device)
    if trim == "top_left":
        rows, cols = rows[:h], cols[:w]
    elif trim == "center":
        top, left = (out_h - h) // 2, (out_w - w) // 2
        rows, cols = rows[top : top + h], cols[left : left + w]
    elif trim != "none":
        raise ValueError(f"unknown trim {trim!r}")
    return linear_resample(x, rows, cols)


def fold_coordinates(coords: Tensor, size: int, mode: str) -> Tensor:
    """Fold sampling coordinates into [0, size-1] so linear interpolation sees the border mode.

    ``reflect``: SciPy's half-sample symmetric extension (map_coordinates mode='reflect');
    ``mirror``: whole-sample symmetric (OpenCV BORDER_REFLECT_101).
    """
    if size == 1:
        return torch.zeros_like(coords)
    if mode == "reflect":
        period = 2 * size
        folded = (coords + 0.5).remainder(period)
        folded = torch.where(folded >= size, period - folded, folded) - 0.5
    elif mode == "mirror":
        period = 2 * (size - 1)
        folded = coords.remainder(period)
        folded = torch.where(folded > size - 1, period - folded, folded)
    else:
        raise ValueError(f"unknown border mode {mode!r}")
    return folded.clamp(0, size - 1)


def sample_at(x: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Bilinear samples at per-pixel coordinates (N, H, W) already inside the image."""
    h, w = x.shape[-2:]
    grid = torch.stack((2 * cols / max(w - 1, 1) - 1, 2 * rows / max(h - 1, 1) - 1), dim=-1)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="border", align_corners=True)


@contextlib.contextmanager
def quiet_torchvision_codecs():
    """torchvision 0.29 announces, at every call, a move of its JPEG/PNG codecs to torchcodec."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


@functools.cache
def _codec_threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="jpeg")


def jpeg_round_trip(x: Tensor, quality: int) -> Tensor:
    """Encode every image as JPEG at ``quality`` and decode it, as libjpeg (PIL, the released
    files' encoder) does: 4:2:0, islow DCT, fancy upsampling. On the CPU libjpeg itself runs, one
    thread per core (it releases the GIL); on CUDA its integer pipeline runs batched on the
    device (``jpeg.jpeg_round_trip_exact``, the same pixels bit for bit). torchvision's nvJPEG
    encoder is not used: it is 4:4:4 and synchronises once per image."""
    images = to_uint8(x)
    if images.is_cuda:
        return jpeg_round_trip_exact(images, quality).to(x.dtype) / 255
    from torchvision.io import decode_jpeg, encode_jpeg

    def round_trip(image: Tensor) -> Tensor:
        return decode_jpeg(encode_jpeg(image, quality=quality))

    with quiet_torchvision_codecs():
        decoded = list(_codec_threads().map(round_trip, images.cpu().unbind(0)))
    return torch.stack(decoded).to(x.device).to(x.dtype) / 255


def to_uint8(x: Tensor) -> Tensor:
    """[0, 1] float → uint8 by rounding (how a [0, 1] image becomes an 8-bit file)."""
    return (x * 255).round_().clamp_(0, 255).to(torch.uint8)


def truncate_to_uint8(x: Tensor) -> Tensor:
    """np.uint8(x·255): the truncation the reference generators apply before saving.

    A tolerance of 1e-4 levels keeps values that are already 8-bit levels (k/255 in float) at k.
    The cast to uint8 truncates, which for these values (all ≥ 1e-4) is the floor.
    """
    return (x.clamp(0, 1) * 255).add_(1e-4).to(torch.uint8)


def truncate_to_uint8_levels(x: Tensor) -> Tensor:
    """``truncate_to_uint8`` back in [0, 1], in the dtype of ``x``."""
    return truncate_to_uint8(x).to(x.dtype) / 255


def plasma_fractal(draws: Draws, mapsize: int, wibble_decay: float) -> Tensor:
    """The reference diamond-square plasma fractal, one map per image; values in [0, 1]."""
    maps = torch.zeros(draws.n, mapsize, mapsize, dtype=torch.float64, device=draws.device)
    step, wibble = mapsize, 100.0

    def wibbled_mean(total: Tensor) -> Tensor:
        noise = draws.uniform(tuple(total.shape[1:]), -wibble, wibble, dtype=torch.float64)
        return total / 4 + wibble * noise

    while step >= 2:
        half = step // 2
        corners = maps[:, 0::step, 0::step]
        square = corners + corners.roll(-1, dims=1)
        square = square + square.roll(-1, dims=2)
        maps[:, half::step, half::step] = wibbled_mean(square)
        centers = maps[:, half::step, half::step]
        corners = maps[:, 0::step, 0::step]
        left = centers + centers.roll(1, dims=1) + corners + corners.roll(-1, dims=2)
        maps[:, 0::step, half::step] = wibbled_mean(left)
        top = centers + centers.roll(1, dims=2) + corners + corners.roll(-1, dims=1)
        maps[:, half::step, 0::step] = wibbled_mean(top)
        step, wibble = half, wibble / wibble_decay
    flat = maps.flatten(1)
    maps = maps - flat.min(dim=1).values[:, None, None]
    return maps / maps.flatten(1).max(dim=1).values[:, None, None]
