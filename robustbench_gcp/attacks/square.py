"""Native batched Square Attack (Andriushchenko et al., 2020) for L∞ and L2, on rows.

The algorithm and defaults are those of AutoAttack's ``SquareAttack`` (``pyautoattack``): margin
loss, untargeted, one restart, ``p_init`` = 0.8 with the piecewise-constant schedule of p in
absolute iterations (``resc_schedule=False``), a square of side ≈ √(p·H·W) per iteration, and the
"improved or already misclassified" acceptance rule; a row stops as soon as it is fooled and the
attack stops when every row is. A fooled row is masked (the loop reads nothing back from the
device) and dropped at the next host check (``rows.RowState``).

What differs from the reference, and why:

* Every row (one image at one ε) draws from its own stream (``ImageStreams``), so its result
  depends on nothing but the row. The reference draws ONE square position, one set of channel
  signs (L∞) and one transpose of ``eta`` per iteration for the whole batch; here each row draws
  its own. Per row the distribution is the same, only the correlation between rows is gone.
  Iteration i draws from repetition i + 1 of the rows' streams (the start from repetition 0), in
  a fresh ``Draws``, so the counters don't depend on which other rows are still active (masked
  rows draw too, and their draws are discarded).
* The random bits come from the counter-based streams, not from torch's global generator, so
  results match the reference statistically, not bitwise.
* Rows with radius 0 are never attacked (they come back as the clean image); rows already fooled
  by the starting point, or never fooled, come back as their best point (the caller re-checks).
* With the margin loss the reference's loss and margin are the same number, so one tensor holds
  both; the acceptance rule (loss decreased, or the candidate is misclassified) is unchanged.
* Only what AutoAttack uses: no restarts, targets, cross-entropy loss or L1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from ..choices import NORMS
from ..rng import Draws, ImageStreams
from .rows import Logits, RowState, normalized, norms, per_row, project

# (last iteration, divisor of p_init): the reference's schedule, in absolute iterations
_SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128), (8000, 256))


def p_selection(p_init: float, iteration: int) -> float:
    """The fraction of pixels the square covers at ``iteration``: halved at fixed iterations, so
    the search goes from coarse to fine."""
    for last, divisor in _SCHEDULE:
        if iteration <= last:
            return p_init / divisor
    return p_init / 512


def _margins(logits: Logits, x: Tensor, labels: Tensor) -> Tensor:
    """True-class logit minus the best other logit: the attack's loss; ≤ 0 means fooled."""
    z = logits(x)
    true = z.gather(1, labels[:, None]).squeeze(1)
    other = z.scatter(1, labels[:, None], float("-inf")).amax(1)
    return true - other


def _signs(draws: Draws, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """±1 with equal chance, (n, *shape)."""
    return torch.where(draws.uniform(shape) < 0.5, -1.0, 1.0).to(dtype)


def _corners(draws: Draws, size: int, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Top-left corners of one square per row. Like the reference (and the paper's code), the
    corner is drawn from [0, H − s), so the last position is only used when s equals the side."""
    return draws.randint(0, max(height - size, 1)), draws.randint(0, max(width - size, 1))


def _window_mask(top: Tensor, left: Tensor, size: int, height: int, width: int) -> Tensor:
    """(n, 1, H, W) booleans: each row's own square, from index comparisons (no loop over rows)."""
    rows = torch.arange(height, device=top.device)
    cols = torch.arange(width, device=top.device)
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + size)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + size)
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]


def _window_index(top: Tensor, left: Tensor, size: int, channels: int) -> tuple[Tensor, ...]:
    """Advanced indices that read or write each row's s × s square as an (n, C, s, s) block."""
    offsets = torch.arange(size, device=top.device)
    batch = torch.arange(len(top), device=top.device)
    return (batch[:, None, None, None], torch.arange(channels, device=top.device)[None, :, None, None],
            (top[:, None] + offsets)[:, None, :, None], (left[:, None] + offsets)[:, None, None, :])


def _rectangles(height: int, width: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Nested rectangles around the centre, the k-th weighted 1/(k+1)², at unit L2 norm: the
    reference's ``eta_rectangles``, which concentrates the L2 mass in the middle of a window."""
    delta = torch.zeros(height, width, dtype=torch.float64)
    mid_h, mid_w = height // 2, width // 2
    for k in range(max(mid_h, mid_w) + 1):
        delta[max(mid_h - k, 0):mid_h + k + 1, max(mid_w - k, 0):mid_w + k + 1] += 1 / (k + 1) ** 2
    return (delta / delta.norm()).to(dtype=dtype, device=device)


@lru_cache(maxsize=64)
def eta(size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The L2 window (s, s): a positive block of rectangles on top of a negative one, unit norm.
    Cached (a few sizes per run; callers never modify it), so the loop runs once per size."""
    top = size // 2
    delta = torch.cat([_rectangles(top, size, dtype, device), -_rectangles(size - top, size, dtype, device)])
    return delta / delta.norm()


def _oriented_eta(draws: Draws, size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``eta(s)`` per row, transposed for about half of them, (n, s, s)."""
    window = eta(size, dtype, device)
    flip = draws.uniform(()) < 0.5
    return torch.where(flip[:, None, None], window.T, window)


def _linf_start(images: Tensor, radii: Tensor, draws: Draws) -> Tensor:
    """Vertical stripes of ±ε (one sign per channel and column), clipped to [0, 1]."""
    channels, _, width = images.shape[1:]
    stripes = _signs(draws, (channels, 1, width), images.dtype)
    return (images + per_row(radii, images.dim()) * stripes).clamp(0, 1)


def _l2_start(images: Tensor, radii: Tensor, draws: Draws) -> Tensor:
    """A grid of ``eta`` windows of side H // 5 with a random sign per channel (and a random
    orientation) each, scaled to L2 norm ε and clipped to [0, 1]."""
    channels, height, width = images.shape[1:]
    size = max(height // 5, 1)
    margin = (height - size * 5) // 2
    delta = torch.zeros_like(images)
    for i in range(height // size):
        for j in range(width // size):
            top, left = margin + i * size, margin + j * size
            windows = _oriented_eta(draws, size, images.dtype, images.device)[:, None]
            windows = windows * _signs(draws, (channels, 1, 1), images.dtype)
            target = delta[:, :, top:top + size, left:left + size]
            target += windows[..., :target.shape[2], :target.shape[3]]
    return (images + normalized(delta, "l2") * per_row(radii, images.dim())).clamp(0, 1)


def _linf_candidate(x0: Tensor, best: Tensor, radii: Tensor, p: float, draws: Draws) -> Tensor:
    """Move one square per row to ±ε around the clean image (a sign per channel): the square is
    set to best ± 2ε and projected back to the ε-ball and [0, 1]."""
    channels, height, width = x0.shape[1:]
    size = min(max(round(math.sqrt(p * height * width)), 1), height, width)
    top, left = _corners(draws, size, height, width)
    signs = _signs(draws, (channels, 1, 1), x0.dtype)
    step = _window_mask(top, left, size, height, width) * signs * per_row(2 * radii, x0.dim())
    return project(best + step, x0, radii, "linf")


def _l2_candidate(x0: Tensor, best: Tensor, radii: Tensor, p: float, draws: Draws) -> Tensor:
    """Move the perturbation's mass from a second square into the first one: the first square gets
    its old (normalised) content plus a fresh ``eta`` window, rescaled per channel so that the mass
    of both squares plus the unused budget (ε² − ‖δ‖²)/C stays put; the second square is cleared.
    The result is scaled to norm ε and clipped to [0, 1]."""
    channels, height, width = x0.shape[1:]
    size = max(round(math.sqrt(p * height * width)), 3)
    size = min(size + 1 if size % 2 == 0 else size, height, width)
    top, left = _corners(draws, size, height, width)
    top2, left2 = _corners(draws, size, height, width)
    window = _oriented_eta(draws, size, x0.dtype, x0.device)[:, None]
    window = window * _signs(draws, (channels, 1, 1), x0.dtype)

    delta = best - x0
    first = _window_index(top, left, size, channels)
    second = _window_mask(top2, left2, size, height, width)
    both = _window_mask(top, left, size, height, width) | second
    old = delta[first]
    old_norm = old.flatten(2).norm(dim=2)[..., None, None]
    both_norm = (delta * both).flatten(2).norm(dim=2)[..., None, None]
    spare = (per_row(radii, x0.dim()) ** 2 - per_row(norms(delta, "l2"), x0.dim()) ** 2).clamp_min(0)
    fresh = window + old / (1e-12 + old_norm)
    fresh = fresh / (1e-12 + fresh.flatten(2).norm(dim=2)[..., None, None]) * (spare / channels + both_norm**2).sqrt()
    delta = delta.masked_fill(second, 0)
    delta[first] = fresh
    return (x0 + normalized(delta, "l2") * per_row(radii, x0.dim())).clamp(0, 1)


@dataclass
class _Rows(RowState):
    """The rows of an attack: their clean images, labels, radii and streams."""

    images: Tensor
    labels: Tensor
    radii: Tensor
    streams: ImageStreams


def square(logits: Logits, images: Tensor, labels: Tensor, radii: Tensor, streams: ImageStreams, *,
           norm: str, queries: int = 5000, p_init: float = 0.8) -> Tensor:
    """Adversarial rows (R, C, H, W): every row's best point after at most ``queries`` iterations
    (plus one query for the start), inside its ε-ball (``radii``, (R,)) and [0, 1].

    ``streams`` holds one stream per row, so a row's result depends on nothing but the row: not on
    the batch it runs in nor on when the other rows are fooled. Rows with radius 0 come back clean.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, not {norm!r}")
    if len(streams) != len(images) or len(labels) != len(images) or len(radii) != len(images):
        raise ValueError("images, labels, radii and streams must have one entry per row")
    device = images.device
    streams = streams.to(device)
    radii = radii.to(device=device, dtype=images.dtype)
    start, candidate = (_linf_start, _linf_candidate) if norm == "linf" else (_l2_start, _l2_candidate)
    with torch.no_grad():
        best = start(images, radii, Draws(len(images), device, streams))
        margin = _margins(logits, best, labels)
        rows = _Rows(position=torch.arange(len(images), device=device), running=(margin > 0) & (radii > 0),
                     images=images, labels=labels, radii=radii, streams=streams)
        for iteration in range(queries):
            if not rows.compact(iteration):
                break
            # every row held draws (its numbers depend on its key and the iteration alone); the
            # stopped rows' candidates are discarded
            draws = Draws(len(rows.position), device, rows.streams.repetition(iteration + 1))
            p = p_selection(p_init, iteration)
            new = candidate(rows.images, best[rows.position], rows.radii, p, draws)
            new_margin = _margins(logits, new, rows.labels)
            old_margin = margin[rows.position]
            # the reference keeps a candidate whose loss decreased or that is misclassified; with
            # the margin loss and a running row's margin > 0, the second implies the first
            accept = rows.running & ((new_margin < old_margin) | (new_margin <= 0))
            margin[rows.position] = torch.where(accept, new_margin, old_margin)
            best[rows.position] = torch.where(per_row(accept, images.dim()), new, best[rows.position])
            rows.running &= margin[rows.position] > 0
    return best
