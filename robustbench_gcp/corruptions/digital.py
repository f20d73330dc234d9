"""Digital corruptions: brightness, contrast, saturate, elastic transform, pixelate, JPEG."""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from ..rng import Draws
from . import ops


def brightness(x: Tensor, shift: float, draws: Draws, protocol: str) -> Tensor:
    """V += shift in HSV. With H and S fixed, RGB is proportional to V, so no HSV round trip."""
    value = x.amax(dim=1, keepdim=True)
    new_value = (value + shift).clamp(0, 1)
    scaled = x * (new_value / value.clamp_min(1e-12))
    return torch.where(value > 0, scaled, new_value.expand_as(x)).clamp(0, 1)


def saturate(x: Tensor, params: tuple[float, float], draws: Draws, protocol: str) -> Tensor:
    """S = S·a + b in HSV. With H and V fixed, V - RGB is proportional to S.

    Gray pixels (S = 0) have hue 0 in scikit-image, so they turn (V, V(1-S'), V(1-S')).
    """
    factor, offset = params
    value = x.amax(dim=1, keepdim=True)
    spread = value - x.amin(dim=1, keepdim=True)
    saturation = torch.where(value > 0, spread / value.clamp_min(1e-12), torch.zeros_like(value))
    new_saturation = (saturation * factor + offset).clamp(0, 1)
    colored = value - (new_saturation / saturation.clamp_min(1e-12)) * (value - x)
    gray_hue0 = torch.cat([value, value * (1 - new_saturation), value * (1 - new_saturation)], dim=1)
    return torch.where(spread > 0, colored, gray_hue0).clamp(0, 1)


def contrast(x: Tensor, factor: float, draws: Draws, protocol: str) -> Tensor:
    means = x.mean(dim=(2, 3), keepdim=True)
    return ((x - means) * factor + means).clamp(0, 1)


def jpeg_compression(x: Tensor, quality: int, draws: Draws, protocol: str) -> Tensor:
    return ops.jpeg_round_trip(x, int(quality))


@functools.lru_cache(maxsize=64)
def _pillow_box_ranges(in_size: int, out_size: int) -> tuple[Tensor, Tensor]:
    """Pillow's BOX resampling (its ``precompute_coeffs``): output o averages inputs [low_o, high_o).

    The box filter gives weight 1 to inputs whose centre lies in (−½, ½] of the output's
    footprint, so each output is the plain mean of one contiguous run of inputs.
    """
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = 0.5 * filter_scale
    lows, highs = [], []
    for out in range(out_size):  # once per (size, scale), cached
        center = (out + 0.5) * scale
        start = max(int(center - support + 0.5), 0)
        stop = min(int(center + support + 0.5), in_size)
        inside = [s for s in range(start, stop) if -0.5 < (s - center + 0.5) / filter_scale <= 0.5]
        lows.append(inside[0])
        highs.append(inside[-1] + 1)
    return torch.tensor(lows), torch.tensor(highs)


def _box_resize_rows(levels: Tensor, size: int) -> Tensor:
    """Pillow BOX resize of the row axis (-2) on 0–255 levels, rounded to 8 bits.

    Means of contiguous runs via prefix sums; integer levels keep float32 sums exact.
    """
    low, high = (t.to(levels.device) for t in _pillow_box_ranges(levels.shape[-2], size))
    prefix = torch.cat([torch.zeros_like(levels[..., :1, :]), levels.cumsum(-2)], -2)
    total = prefix.index_select(-2, high) - prefix.index_select(-2, low)
    return (total / (high - low).to(levels)[:, None]).round()


def _nearest_resize_rows(levels: Tensor, size: int) -> Tensor:
    """Pillow NEAREST resize of the row axis: source = floor((o + ½)·in/out)."""
    in_size = levels.shape[-2]
    source = ((torch.arange(size, dtype=torch.float64) + 0.5) * (in_size / size)).floor().long()
    return levels.index_select(-2, source.clamp(max=in_size - 1).to(levels.device))


def _resize(levels: Tensor, height: int, width: int, rows_fn) -> Tensor:
    """Horizontal pass first, then vertical, as Pillow; rows are the fast axis to gather."""
    wide = rows_fn(levels.transpose(-1, -2), width).transpose(-1, -2)
    return rows_fn(wide, height)


def pixelate(x: Tensor, factor: float, draws: Draws, protocol: str) -> Tensor:
    """Pillow BOX down-scaling, then NEAREST (imagecorruptions) or BOX (the generators) back up."""
    h, w = x.shape[-2:]
    up = _nearest_resize_rows if protocol == "imagecorruptions" else _box_resize_rows
    levels = (x.float() * 255).round().clamp(0, 255)
    small = _resize(levels, int(h * factor), int(w * factor), _box_resize_rows)
    return (_resize(small, h, w, up) / 255).to(x.dtype)


def _displacement(draws: Draws, shape: tuple[int, int], bound: float, sigma: tuple[float, float],
                  alpha: float, dtype: torch.dtype) -> Tensor:
    """alpha · gaussian(U(-bound, bound)) with SciPy's reflect border and truncate=3."""
    field = draws.uniform((1, *shape), -bound, bound, dtype=torch.float64)
    return (ops.gaussian_blur(field, sigma, mode="reflect", truncate=3.0) * alpha)[:, 0].to(dtype)


def _random_affine(x: Tensor, spread: float, draws: Draws) -> Tensor:
    """The generators' random affine warp (cv2.getAffineTransform + warpAffine, REFLECT_101)."""
    n, _, h, w = x.shape
    center_a, center_b = float(h // 2), float(w // 2)
    side = min(h, w) // 3
    # The generators build the points from (H, W) but OpenCV reads them as (x, y).
    source = ops.to_device(torch.tensor([[center_a + side, center_b + side], [center_a + side, center_b - side],
                                         [center_a - side, center_b - side]], dtype=torch.float64), x.device)
    target = source + draws.uniform((3, 2), -spread, spread, dtype=torch.float64)
    ones = torch.ones(3, 1, dtype=torch.float64, device=x.device)
    # forward map M (2×3): target = M [source; 1]; warpAffine samples src at M⁻¹ · dst
    forward = torch.linalg.solve(torch.cat([source, ones], 1).expand(n, 3, 3), target).mT
    last_row = ops.to_device(torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64), x.device).expand(n, 1, 3)
    full = torch.cat([forward, last_row], 1)
    inverse = torch.linalg.inv(full)[:, :2]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64, device=x.device),
                            torch.arange(w, dtype=torch.float64, device=x.device), indexing="ij")
    points = torch.stack([xs, ys, torch.ones_like(xs)], dim=0).reshape(3, -1)
    mapped = (inverse @ points).reshape(n, 2, h, w)
    cols = ops.fold_coordinates(mapped[:, 0], w, "mirror")
    rows = ops.fold_coordinates(mapped[:, 1], h, "mirror")
    return ops.sample_at(x, rows, cols)


def elastic_transform(x: Tensor, params, draws: Draws, protocol: str) -> Tensor:
    n, _, h, w = x.shape
    if protocol == "imagecorruptions":
        alpha, sigma, bound = params, (0.01 * h, 0.01 * w), 0.005 * h
        dx = _displacement(draws, (h, w), bound, sigma, alpha, torch.float64)
        dy = _displacement(draws, (h, w), bound, sigma, alpha, torch.float64)
    else:
        alpha, sigma, spread = params
        x = _random_affine(x, spread, draws)
        dx = _displacement(draws, (h, w), 1.0, (sigma, sigma), alpha, torch.float64)
        dy = _displacement(draws, (h, w), 1.0, (sigma, sigma), alpha, torch.float64)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64, device=x.device),
                            torch.arange(w, dtype=torch.float64, device=x.device), indexing="ij")
    rows = ops.fold_coordinates(ys + dy, h, "reflect")
    cols = ops.fold_coordinates(xs + dx, w, "reflect")
    return ops.sample_at(x, rows, cols).clamp(0, 1)
