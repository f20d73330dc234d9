"""FAB, the Fast Adaptive Boundary attack (Croce & Hein, 2020), for L∞ and L2, on rows.

FAB looks for the smallest perturbation that changes the prediction: it linearises the model at
the current point, takes the closest decision hyperplane, projects the current point and the
original image onto that hyperplane inside the box [0, 1], and moves to a mix of the two
projections biased towards the original (α ≤ α_max, overshoot η). Once a point is adversarial it
steps back towards the original (β) and keeps the smallest adversarial point seen. A row counts
as fooled only when that point lies within its radius, as in AutoAttack.

The algorithm, defaults and random starts (restarts after the first start at 0.5·ε, uniform
direction in L∞, Gaussian in L2) follow the reference in ``pyautoattack`` (``fab_base.py``,
``fab_pt.py``); the box-constrained projections are written anew from the optimality conditions.
Everything is batched over rows, each with its own radius and random stream, so a row's result
depends on nothing but the row.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..choices import NORMS
from ..rng import Draws, ImageStreams
from .rows import Logits, attempt_rows, first_success, normalized, norms, per_row, target_classes

__all__ = ["fab", "projection", "projection_l2", "projection_linf"]


def projection(points: Tensor, w: Tensor, b: Tensor, norm: str) -> Tensor:
    """The step ``d`` of least L∞ or L2 norm that puts every row of ``points`` (R, D), in [0, 1],
    on its hyperplane ``w·x = b`` while staying in [0, 1]; where the box cannot reach the
    hyperplane, the step to the box corner that gets closest (FAB's choice).

    Both norms reduce to one problem. Let the required change of ``w·x`` be a decrease by
    ``need = |w·t − b|`` (flip the hyperplane's sign if not), so each coordinate moves against its
    weight, by at most its ``room`` to the box face. The optimal step moves coordinate i by
    ``min(λ·s_i, room_i)`` with s_i = 1 (L∞: a common bound λ) or s_i = |w_i| (L2: the KKT
    condition d = −λ·w clipped to the box), for the least λ whose total decrease
    ``Σ |w_i|·min(λ·s_i, room_i)`` reaches ``need``. That total is piecewise linear and
    non-decreasing in λ with breakpoints ``room_i / s_i``: sort them, evaluate the total at each
    with cumulative sums, count the breakpoints where it is still short of ``need`` and solve the
    linear piece after them.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, not {norm!r}")
    if norm == "l2":  # as the reference: weights this small neither move nor count
        w = w.masked_fill(w.abs() < 1e-8, 0)
    gap = (w * points).sum(1) - b
    need = gap.abs()
    down = w * torch.where(gap >= 0, 1.0, -1.0).to(w.dtype)[:, None] > 0  # moving down brings the plane closer
    room = torch.where(down, points, 1 - points)
    weight = w.abs()
    scale = torch.ones_like(weight) if norm == "linf" else weight
    breakpoints = torch.where(scale > 0, room / scale.clamp_min(1e-30), torch.zeros_like(room))
    breakpoints, order = breakpoints.sort(dim=1)
    gain = (weight * room).gather(1, order)  # the decrease from coordinate i once saturated
    slope = (weight * scale).gather(1, order)  # its decrease per unit of λ before that
    saturated = gain.cumsum(1) - gain  # decrease from the coordinates below each breakpoint
    moving = slope.flip(1).cumsum(1).flip(1)  # slope of the coordinates from each breakpoint on
    below = ((saturated + breakpoints * moving) < need[:, None]).sum(1, keepdim=True)
    piece = below.clamp_max(points.shape[1] - 1)
    lam = ((need[:, None] - saturated.gather(1, piece)) / moving.gather(1, piece).clamp_min(1e-30)).clamp_min(0)
    reachable = (gain.sum(1) > need)[:, None]
    move = torch.where(reachable, torch.minimum(lam * scale, room), room)
    return torch.where(down, -move, move) * (w != 0)


def projection_linf(points: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """:func:`projection` for L∞, with the reference's ``projection_linf`` arguments."""
    return projection(points, w, b, "linf")


def projection_l2(points: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """:func:`projection` for L2, with the reference's ``projection_l2`` arguments."""
    return projection(points, w, b, "l2")


def _dual_norms(g: Tensor, norm: str) -> Tensor:
    """The dual norm of gradient rows (L1 for L∞, L2 for L2): distance to a hyperplane = |f| / it."""
    return g.abs().sum(1) if norm == "linf" else g.norm(dim=1)


def _closest_hyperplane(logits: Logits, x: Tensor, labels: Tensor, target: Tensor | None,
                        norm: str) -> tuple[Tensor, Tensor]:
    """The linearised decision boundary nearest to ``x``: the logit difference (other − label),
    (R,), and its input gradient, (R, D). Untargeted, over every other class, one backward pass
    per class with only the best gradient kept, so memory stays at one gradient per row;
    targeted, the boundary to ``target`` alone."""
    point = x.detach().requires_grad_(True)
    rows = torch.arange(len(x), device=x.device)
    with torch.enable_grad():
        out = logits(point)
        if target is not None:
            diff = out[rows, target] - out[rows, labels]
            (grad,) = torch.autograd.grad(diff.sum(), point)
            return diff.detach(), grad.flatten(1)
        classes = out.shape[1]
        values = out.detach()
        best_diff = torch.zeros(len(x), dtype=values.dtype, device=x.device)
        best_grad = torch.zeros_like(x.flatten(1))
        best_dist = torch.full_like(best_diff, float("inf"))
        for k in range(classes):
            weights = torch.zeros_like(values)
            weights[:, k] += 1
            weights[rows, labels] -= 1  # the gradient of out_k − out_label in one pass
            (grad,) = torch.autograd.grad(out, point, weights, retain_graph=k < classes - 1)
            grad = grad.flatten(1)
            diff = values[:, k] - values[rows, labels]
            dist = (diff.abs() / (1e-12 + _dual_norms(grad, norm))).masked_fill(labels == k, float("inf"))
            closer = dist < best_dist
            best_dist = torch.where(closer, dist, best_dist)
            best_diff = torch.where(closer, diff, best_diff)
            best_grad = torch.where(closer[:, None], grad, best_grad)
    return best_diff, best_grad


def _boundary_search(logits: Logits, x0: Tensor, labels: Tensor, start: Tensor, target: Tensor | None, *,
                     norm: str, steps: int, alpha_max: float, eta: float, beta: float) -> tuple[Tensor, Tensor]:
    """One FAB run from ``start``: the smallest adversarial point found per row and its distance
    to ``x0`` (the clean image and ∞ where none was found)."""
    n = len(x0)
    flat0 = x0.flatten(1)
    x = start.clone()
    best = x0.clone()
    best_size = torch.full((n,), float("inf"), dtype=x0.dtype, device=x0.device)
    for _ in range(steps):
        diff, grad = _closest_hyperplane(logits, x, labels, target, norm)
        with torch.no_grad():
            flat = x.flatten(1)
            offset = (grad * flat).sum(1) - diff  # the hyperplane grad·z = offset, where the linearisation is 0
            both = projection(torch.cat((flat, flat0)), torch.cat((grad, grad)), torch.cat((offset, offset)), norm)
            sizes = norms(both, norm).clamp_min(1e-8)
            alpha = per_row((sizes[:n] / (sizes[:n] + sizes[n:])).clamp(0, alpha_max), x.dim())
            to_x, to_x0 = both[:n].view_as(x), both[n:].view_as(x)
            x = ((x + eta * to_x) * (1 - alpha) + (x0 + eta * to_x0) * alpha).clamp(0, 1)
            adversarial = logits(x).argmax(1) != labels
            size = norms(x - x0, norm)
            better = adversarial & (size < best_size)
            best = torch.where(per_row(better, x.dim()), x, best)
            best_size = torch.where(better, size, best_size)
            x = torch.where(per_row(adversarial, x.dim()), x0 + (x - x0) * beta, x)
    return best, best_size


def _random_start(x0: Tensor, radii: Tensor, norm: str, draws: Draws) -> Tensor:
    """The reference's start for restarts: at 0.5·ε in a random direction (a uniform draw from the
    cube scaled onto the L∞ sphere, or a Gaussian one onto the L2 sphere), clipped to the box."""
    shape = tuple(x0.shape[1:])
    if norm == "linf":
        noise = draws.uniform(shape, -1.0, 1.0, dtype=x0.dtype)
    else:
        noise = draws.normal(shape, dtype=x0.dtype)
    return (x0 + 0.5 * per_row(radii, x0.dim()) * normalized(noise, norm)).clamp(0, 1)


def _distinct(*columns: Tensor) -> tuple[Tensor, Tensor]:
    """Representatives of the distinct rows of ``columns`` (each (R,) or (R, D)) and every row's
    group: a run depends on nothing but its image, label, target and start (not on ε), so the
    rows of one image at several radii share their runs from the image itself."""
    key = torch.cat([column.reshape(len(column), -1).to(columns[0].dtype) for column in columns], 1)
    _, group = torch.unique(key, dim=0, return_inverse=True)
    count = int(group.max()) + 1
    first = torch.full((count,), len(key), dtype=torch.long, device=key.device)
    first = first.scatter_reduce(0, group, torch.arange(len(key), device=key.device), "amin")
    return first, group


def fab(logits: Logits, images: Tensor, labels: Tensor, radii: Tensor, streams: ImageStreams, *,
        norm: str, targets: int = 0, restarts: int = 1, steps: int = 100,
        alpha_max: float = 0.1, eta: float = 1.05, beta: float = 0.9, max_rows: int | None = None) -> Tensor:
    """FAB on rows (R, C, H, W) in [0, 1] with per-row radii (R,): every row's smallest adversarial
    point found if its norm is at most the row's radius, else the clean image.

    ``targets=0`` is untargeted FAB (AutoAttack's plus version uses 5 restarts); ``targets=k``
    attacks the k classes ranked after the top one on the clean image, in rank order, each with
    ``restarts`` runs (AutoAttack's FAB-T: 9 targets, 1 restart). Restart 0 starts at the image,
    restart r > 0 at a random point of the row's stream ``repetition(r)``. Rows with radius 0 and
    rows already misclassified come back clean. Every target × restart is an attempt, and a row
    keeps its earliest one that fools it. Attempts run as rows of one batch, as many as fit in
    ``max_rows`` rows (default: the rows given), on the rows earlier runs left robust; any
    grouping gives the same result.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, not {norm!r}")
    if len(streams) != len(images):
        raise ValueError(f"got {len(streams)} streams for {len(images)} rows; pass one per row")
    result = images.clone()
    rows = (radii > 0).nonzero().squeeze(1)
    if len(rows) == 0 or steps <= 0 or restarts <= 0:
        return result
    x, y, eps = images[rows], labels[rows], radii[rows].to(images.dtype)
    keys = streams.to(images.device)[rows]
    if targets > 0:
        with torch.no_grad():
            goals = target_classes(logits(x), targets)
    settings = dict(norm=norm, steps=steps, alpha_max=alpha_max, eta=eta, beta=beta)

    def run(active: Tensor, numbers: range) -> Tensor:
        chosen, attempt = attempt_rows(active, numbers)
        x0, y0, radius = x[chosen], y[chosen], eps[chosen]
        target = goals[attempt // restarts, chosen] if targets > 0 else None
        start = x0
        if restarts > 1:  # restarts r > 0 start at random (every row draws; restart 0 discards its draws)
            draws = Draws(len(chosen), x.device, ImageStreams.cat([keys[active].repetition(number % restarts)
                                                                   for number in numbers]))
            start = torch.where(per_row(attempt % restarts > 0, x0.dim()), _random_start(x0, radius, norm, draws), x0)
        first, group = _distinct(x0, start, y0, *([] if target is None else [target]))
        best, size = _boundary_search(logits, x0[first], y0[first], start[first],
                                      None if target is None else target[first], **settings)
        found = torch.where(per_row(size[group] <= radius, x0.dim()), best[group], x0)
        return found.view(len(numbers), len(active), *x.shape[1:])

    result[rows] = first_success(logits, x, y, max(targets, 1) * restarts, run, max_rows)
    return result
