"""Grey occluders: checkerboard cutout (random squares of a rotated checkerboard, both C-bar
sets) and lines (anti-aliased grey lines, CIFAR-10-C-bar).

Lines are drawn with scikit-image's ``line_aa`` rasteriser (Zingl's algorithm), which the
generator calls: here it runs for every line of every image at once, one step of the algorithm
per iteration, and the lines are then blended one after another with the generator's 8-bit
truncation after each, so overlapping lines darken as they do there.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ...rng import Draws
from .common import CBarCorruption, Params, level

_GREY = 128  # the occluders' colour, in 0–255 levels


def _most_cells(size: int) -> int:
    """The largest grid side the generator can draw: int(4·size // scale) at the smallest scale."""
    return int(4 * size // max(0.1 * size, 1.0))


def _checkerboard_sample(draws: Draws, size: int, value: float) -> Params:
    u = draws.uniform((2,), dtype=torch.float64)
    most = _most_cells(size) + 1
    return {"angle": 2 * math.pi * u[:, 0], "scale": (0.1 + 0.15 * u[:, 1]).mul(size).clamp(min=1),
            "grid": draws.uniform((most, most)) < level(value, 1.0)}


def _checkerboard_render(images: Tensor, params: Params, value: float) -> Tensor:
    """Squares of a checkerboard rotated by ``angle`` with side ``scale``: of the squares of one
    colour, those whose grid entry is set turn grey. The generator indexes its grid with
    truncated (toward zero) coordinates and Python's wrap-around for negative ones. float32: a
    rounding can only move a pixel that lies on a square's edge to the neighbouring square."""
    size = images.shape[-1]
    index = torch.arange(size, device=images.device, dtype=torch.float32)
    angle, scale = params["angle"][:, None], params["scale"][:, None]
    cos, sin = (torch.cos(angle) / scale).float(), (torch.sin(angle) / scale).float()
    u = (cos * index)[:, :, None] + (sin * index)[:, None, :]  # rotated coordinates: rows, then columns
    v = (-sin * index)[:, :, None] + (cos * index)[:, None, :]
    other_colour = torch.remainder(torch.floor(u).add_(torch.floor(v)), 2) == 1  # int(u % 2) != int(v % 2)
    cells = torch.floor(4 * size / params["scale"]).float()[:, None, None]  # the generator's int(4·size // scale)
    grid = params["grid"]
    u, v = torch.trunc_(u), torch.trunc_(v)  # int(): toward zero; negative ones wrap around
    u, v = torch.where(u < 0, u + cells, u), torch.where(v < 0, v + cells, v)
    flat = u.mul_(grid.shape[-1]).add_(v).long()
    cut = grid.flatten(1).gather(1, flat.flatten(1)).view_as(other_colour)
    return images.masked_fill((cut & ~other_colour)[:, None], _GREY / 255)


def _lines_count(size: int, value: float) -> int:
    return int(level(value, 1.0) * size)


def _lines_sample(draws: Draws, size: int, value: float) -> Params:
    u = draws.uniform((2,), dtype=torch.float64)
    return {"angle": 2 * math.pi * u[:, 0], "angle_variation": 0.1 + 0.9 * u[:, 1],
            "line_draws": draws.uniform((_lines_count(size, value), 3), dtype=torch.float64)}


def line_aa_batch(r0: Tensor, c0: Tensor, r1: Tensor, c1: Tensor,
                  longest: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """scikit-image's ``line_aa`` for many lines at once: integer end points (...,) in, and per
    line the (rows, cols, values, valid) of its pixels, (..., 3·(longest + 1)) each; ``longest``
    bounds every line's larger extent |Δrow|, |Δcol|.

    ``line_aa`` runs Zingl's loop: each iteration plots the pixel on the line and, where the error
    term allows, one neighbour per axis it steps along. Along the major axis it steps every time
    and along the minor one exactly when the Bresenham count floor(minor·(2k+1) / (2·major))
    grows, so iteration k's state has a closed form and all iterations are computed at once (the
    same pixels and values as ``line_aa``, checked on every line up to 40 px in the tests)."""
    a, b = (c1 - c0).abs()[..., None], (r1 - r0).abs()[..., None]  # the loop's dc, dr
    sign_c, sign_r = torch.where(c0 < c1, 1, -1)[..., None], torch.where(r0 < r1, 1, -1)[..., None]
    k = torch.arange(longest + 2, device=r0.device)
    x_major = a >= b
    i = torch.where(x_major, k, torch.div(a * (2 * k + 1), (2 * b).clamp(min=1), rounding_mode="floor"))
    j = torch.where(x_major, torch.div(b * (2 * k + 1), (2 * a).clamp(min=1), rounding_mode="floor"), k)
    iterations = torch.maximum(a, b) + 1
    step_x, step_y = i[..., 1:] > i[..., :-1], j[..., 1:] > j[..., :-1]  # iteration k steps along x / y
    i, j, k = i[..., :-1], j[..., :-1], k[:-1]
    on_line = k < iterations
    inner = k < iterations - 1
    err = (a * (1 + j) - b * (1 + i)).double()
    ed = torch.where(a + b == 0, 1.0, torch.sqrt((a * a + b * b).double()))
    a_f, b_f = a.double(), b.double()
    row, col = r0[..., None] + j * sign_r, c0[..., None] + i * sign_c
    def emitted(on: Tensor, x_extra: Tensor, y_extra: Tensor) -> Tensor:  # line_aa's order: by iteration
        return torch.stack((on, x_extra, y_extra), dim=-1).flatten(-2)

    rows = emitted(row, row + sign_r, row)
    cols = emitted(col, col, col + sign_c)
    values = 1 - emitted((err - a_f + b_f).abs(), (err + b_f).abs(), (a_f - err).abs()) / ed
    valid = emitted(on_line, inner & step_x & (err + b_f < ed), inner & step_y & (a_f - err < ed))
    return rows, cols, values, valid


def _lines_render(images: Tensor, params: Params, value: float) -> Tensor:
    """Each line: a random point, a direction near the image's main angle, one image side long
    on each side of the point; end points truncated toward zero as the generator's int()."""
    n, channels, size, _ = images.shape
    draws = params["line_draws"]
    if draws.shape[1] == 0:
        return images.clone()
    x, y = size * draws[..., 0], size * draws[..., 1]
    angle = params["angle"][:, None] + 2 * math.pi * params["angle_variation"][:, None] * (draws[..., 2] - 0.5)
    s, c = torch.sin(angle) * size, torch.cos(angle) * size
    ends = [torch.trunc(t).long() for t in (x - c, y - s, x + c, y + s)]
    rows, cols, values, valid = line_aa_batch(*ends, longest=2 * size + 1)  # (N, lines, K); |x ± c| < 2·size
    valid = valid & (rows >= 0) & (cols >= 0) & (rows < size) & (cols < size)
    pixels = size * size
    index = torch.where(valid, rows * size + cols, pixels)  # invalid ones land in a spare slot
    out = torch.cat((images.double().reshape(n, channels, pixels) * 255,
                     images.new_zeros((n, channels, 1), dtype=torch.float64)), dim=-1)
    for line in range(draws.shape[1]):
        where = index[:, line][:, None].expand(n, channels, -1)
        alpha = values[:, line][:, None]
        blended = torch.floor((1 - alpha) * out.gather(2, where) + alpha * _GREY)
        out.scatter_(2, where, torch.where(valid[:, line][:, None], blended, out.gather(2, where)))
    return (out[..., :pixels] / 255).reshape(images.shape).to(images.dtype)


checkerboard_cutout = CBarCorruption(_checkerboard_sample, _checkerboard_render)
lines = CBarCorruption(_lines_sample, _lines_render)
