"""Spatter (an extra corruption): water drops (severities 1–3) or mud (4–5).

The water drops' shading runs an OpenCV pipeline in the reference (Canny edges, a chamfer
distance transform, histogram equalisation, an emboss filter); each step is re-implemented here
as batched tensor code with OpenCV's conventions (borders, thresholds, 8-bit rounding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..rng import Draws
from . import ops

MUD = (63 / 255, 42 / 255, 20 / 255)
WATER = (175 / 255, 238 / 255, 238 / 255)
# OpenCV's Canny: tan(22.5°) in 15-bit fixed point.
_TG22 = int(0.4142135623730950488016887242097 * (1 << 15) + 0.5)
# OpenCV's 5×5 chamfer mask for DIST_L2: (dy, dx) → cost.
_CHAMFER = [((dy, dx), 1.0) for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0))]
_CHAMFER += [((dy, dx), 1.4) for dy, dx in ((1, 1), (1, -1), (-1, 1), (-1, -1))]
_CHAMFER += [((dy, dx), 2.1969) for dy, dx in ((1, 2), (2, 1), (-1, 2), (-2, 1), (1, -2), (2, -1), (-1, -2), (-2, -1))]
_EMBOSS = torch.tensor([[-2.0, -1.0, 0.0], [-1.0, 1.0, 1.0], [0.0, 1.0, 2.0]])


def _neighbor(x: Tensor, dy: int, dx: int, fill: float) -> Tensor:
    """x shifted so that out[i, j] = x[i + dy, j + dx], with ``fill`` outside."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (2, 2, 2, 2), value=fill)
    return padded[..., 2 + dy : 2 + dy + h, 2 + dx : 2 + dx + w]


def canny(image: Tensor, low: int = 50, high: int = 150) -> Tensor:
    """``cv2.Canny(image, low, high)`` (aperture 3, L1 norm) on 0–255 levels (N, 1, H, W) → bool edges."""
    padded = ops.pad2d(image, 1, 1, "nearest").long()  # Sobel 3×3, BORDER_REPLICATE, separable
    smooth_rows = padded[..., :-2, :] + 2 * padded[..., 1:-1, :] + padded[..., 2:, :]
    smooth_cols = padded[..., :-2] + 2 * padded[..., 1:-1] + padded[..., 2:]
    gx = smooth_rows[..., 2:] - smooth_rows[..., :-2]
    gy = smooth_cols[..., 2:, :] - smooth_cols[..., :-2, :]
    mag = gx.abs() + gy.abs()
    xs, ys = gx.abs(), gy.abs() << 15
    tg22x = xs * _TG22
    tg67x = tg22x + (xs << 16)
    same_sign = (gx ^ gy) >= 0

    def at(dy: int, dx: int) -> Tensor:
        return _neighbor(mag, dy, dx, 0)

    horizontal = (mag > at(0, -1)) & (mag >= at(0, 1))
    vertical = (mag > at(-1, 0)) & (mag >= at(1, 0))
    diagonal = torch.where(same_sign, (mag > at(-1, -1)) & (mag > at(1, 1)), (mag > at(-1, 1)) & (mag > at(1, -1)))
    local_max = torch.where(ys < tg22x, horizontal, torch.where(ys > tg67x, vertical, diagonal))
    candidate = local_max & (mag > low)
    edges = candidate & (mag > high)
    while True:  # hysteresis: grow strong edges through 8-connected candidates
        before = edges
        for _ in range(8):  # check for convergence every 8 growth steps
            edges = _dilate3(edges) & candidate
        if torch.equal(edges, before):
            return edges


def _dilate3(mask: Tensor) -> Tensor:
    """3×3 binary dilation as two separable shifted ORs (max-pooling is slow on CPUs)."""
    padded = F.pad(mask, (1, 1, 0, 0))
    rows = padded[..., :-2] | padded[..., 1:-1] | padded[..., 2:]
    padded = F.pad(rows, (0, 0, 1, 1))
    return padded[..., :-2, :] | padded[..., 1:-1, :] | padded[..., 2:, :]


def chamfer_distance(edges: Tensor, limit: float = 20.0) -> Tensor:
    """``cv2.distanceTransform(~edges, DIST_L2, 5)`` truncated at ``limit``: parallel relaxation.

    Every chamfer step costs at least 1, so ``limit`` rounds of relaxation settle every distance
    below the limit; larger ones are cut to the limit anyway.
    """
    inf = float("inf")
    h, w = edges.shape[-2:]
    distance = torch.where(edges, 0.0, inf).to(torch.float32)
    for _ in range(int(limit) + 1):
        padded = F.pad(distance, (2, 2, 2, 2), value=inf)
        for (dy, dx), cost in _CHAMFER:
            torch.minimum(distance, padded[..., 2 + dy : 2 + dy + h, 2 + dx : 2 + dx + w] + cost, out=distance)
    return distance.clamp(max=limit)


def box_blur3(x: Tensor) -> Tensor:
    """``cv2.blur(x, (3, 3))`` with BORDER_REFLECT_101."""
    return F.avg_pool2d(ops.pad2d(x, 1, 1, "mirror"), 3, stride=1)


def equalize_hist(levels: Tensor) -> Tensor:
    """``cv2.equalizeHist`` of integer levels 0–255, per image (N, 1, H, W)."""
    n = levels.shape[0]
    flat = levels.reshape(n, -1).long()
    hist = torch.zeros(n, 256, dtype=torch.long, device=levels.device).scatter_add_(1, flat, torch.ones_like(flat))
    total = flat.shape[1]
    first = (hist > 0).long().argmax(dim=1, keepdim=True)
    first_count = hist.gather(1, first)
    cumulative = hist.cumsum(dim=1) - first_count
    scale = 255.0 / (total - first_count).clamp_min(1).double()
    lut = (cumulative.double() * scale).round().clamp(0, 255)
    lut = torch.where(torch.arange(256, device=levels.device)[None] <= first, 0.0, lut)
    lut = torch.where(first_count == total, first.double().expand(-1, 256), lut)
    return lut.gather(1, flat).reshape(levels.shape).to(levels.dtype)


def water_shading(liquid: Tensor) -> Tensor:
    """The reference's water-drop intensity map from the thresholded liquid layer (N, 1, H, W)."""
    levels = (liquid * 255).clamp(0, 255).floor()
    distance = chamfer_distance(canny(levels))
    distance = box_blur3(distance).floor()  # .astype(np.uint8)
    distance = equalize_hist(distance)
    distance = ops.filter2d(distance, _EMBOSS.to(distance), mode="mirror").round().clamp(0, 255)
    distance = box_blur3(distance).round()  # 8-bit blur rounds
    shading = levels * distance
    peak = shading.amax(dim=(2, 3), keepdim=True)
    return torch.where(peak > 0, shading / peak.clamp_min(1e-12), torch.zeros_like(shading))


def spatter(x: Tensor, params: tuple, draws: Draws, protocol: str) -> Tensor:
    loc, scale, sigma, threshold, strength, mud = params
    h, w = x.shape[-2:]
    liquid = ops.gaussian_blur(draws.normal((1, h, w), mean=loc, std=scale, dtype=torch.float64), float(sigma))
    liquid = liquid.masked_fill(liquid < threshold, 0)
    if mud:
        mask = ops.gaussian_blur((liquid > threshold).to(x.dtype), float(strength))
        mask = mask.masked_fill(mask < 0.8, 0)
        color = x.new_tensor(MUD).view(1, 3, 1, 1) * mask
        return (x * (1 - mask) + color).clamp(0, 1)
    shading = water_shading(liquid).to(x.dtype) * strength
    return (x + shading * x.new_tensor(WATER).view(1, 3, 1, 1)).clamp(0, 1)
