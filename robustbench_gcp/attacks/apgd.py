"""Native APGD (Croce & Hein, 2020): step-size-free PGD on the cross-entropy or DLR loss.

The algorithm and defaults are AutoAttack's: a start uniform in the L∞ box or on the L2 sphere
of radius ε, step 2ε, momentum 0.75 from the second step, checkpoints at 22 % of the iterations
then shrinking by 3 % down to 6 %, where a row's step halves (and it goes back to its best
point) when its loss rose in at most ρ = 0.75 of the steps since the last checkpoint, or when
neither the step was halved nor the best loss improved at the last one. The targeted version
runs the targeted DLR loss against the classes ranked 2nd, 3rd, … on the clean image.

Unlike the reference, every row (one image at one ε) draws its start from its own stream, so a
row's result does not depend on the batch, the other rows or the points earlier attacks broke.
The targets and restarts are attempts, each with its own repetition of the row's stream; several
can run as rows of one batch, and an image keeps its earliest attempt that fools it, as when the
reference runs them one after the other on the points still robust.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..choices import NORMS
from ..rng import Draws, ImageStreams
from .rows import Logits, RowState, attempt_rows, first_success, normalized, per_row, project, target_classes

LOSSES = ("ce", "dlr")
Loss = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]  # (logits, labels, targets) → per-row loss
MOMENTUM = 0.75
SETTLED = 0.05  # a misclassification margin no rounding of the model's logits can undo


def dlr_loss(logits: Tensor, labels: Tensor, _: Tensor | None = None) -> Tensor:
    """Difference of logits ratio: −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3), per row."""
    ordered = logits.sort(dim=1).values
    own = logits.gather(1, labels[:, None]).squeeze(1)
    top_is_label = logits.argmax(1) == labels
    best_other = torch.where(top_is_label, ordered[:, -2], ordered[:, -1])
    return -(own - best_other) / (ordered[:, -1] - ordered[:, -3] + 1e-12)


def targeted_dlr_loss(logits: Tensor, labels: Tensor, targets: Tensor) -> Tensor:
    """−(z_y − z_t) / (z_π1 − (z_π3 + z_π4) / 2), per row."""
    ordered = logits.sort(dim=1).values
    own = logits.gather(1, labels[:, None]).squeeze(1)
    target = logits.gather(1, targets[:, None]).squeeze(1)
    return -(own - target) / (ordered[:, -1] - 0.5 * (ordered[:, -3] + ordered[:, -4]) + 1e-12)


def _settled(logits: Tensor, labels: Tensor) -> Tensor:
    """Rows misclassified with a margin of at least ``SETTLED`` × their largest |logit|."""
    own = logits.gather(1, labels[:, None]).squeeze(1)
    other = logits.scatter(1, labels[:, None], float("-inf")).amax(1)
    return other - own >= SETTLED * logits.abs().amax(1).clamp_min(1.0)


def _random_start(images: Tensor, radii: Tensor, norm: str, draws: Draws) -> Tensor:
    if norm == "linf":
        direction = draws.uniform(tuple(images.shape[1:]), -1.0, 1.0)
    else:
        direction = draws.normal(tuple(images.shape[1:]))
    return (images + per_row(radii, images.dim()) * normalized(direction, norm)).clamp(0, 1)


class _Schedule:
    """AutoAttack's checkpoints: the first after 22 % of the steps, then every k steps with k
    shrinking by 3 % of the steps down to 6 %."""

    def __init__(self, steps: int) -> None:
        self.interval = max(int(0.22 * steps), 1)
        self.shrink = max(int(0.03 * steps), 1)
        self.smallest = max(int(0.06 * steps), 1)
        self.since = 0

    def tick(self) -> int | None:
        """The current interval when this step is a checkpoint (then the next interval starts)."""
        self.since += 1
        if self.since < self.interval:
            return None
        interval, self.since = self.interval, 0
        self.interval = max(interval - self.shrink, self.smallest)
        return interval


@dataclass
class _Rows(RowState):
    """The state of the rows of one run: (attempt, image) pairs."""

    image: Tensor  # the row's image, 0 … images − 1 of the run
    attempt: Tensor  # its attempt's number: an image's earliest attempt that fools it counts
    images: Tensor
    labels: Tensor
    targets: Tensor | None
    radii: Tensor
    x_adv: Tensor
    x_previous: Tensor
    x_best: Tensor
    gradient: Tensor
    gradient_best: Tensor
    best: Tensor
    step: Tensor
    losses: Tensor  # (rows, steps)
    best_at_checkpoint: Tensor
    halved_at_checkpoint: Tensor


def _single_run(logits: Logits, images: Tensor, labels: Tensor, targets: Tensor | None, radii: Tensor, draws: Draws,
                image: Tensor, attempt: Tensor, *, norm: str, loss: Loss, steps: int, rho: float,
                eot: int) -> Tensor:
    """One APGD run on rows; returns each row's last misclassified iterate (its start otherwise),
    as the reference does. The rows are attempts (``attempt``: restarts, target classes) on
    images (``image``), all run at once.

    A deterministic model's row stops once it is misclassified by a clear margin (``SETTLED`` of
    its largest logit, far above float32 and bf16 rounding): its outcome is settled, and so are
    the later attempts on its image, which stop too; the rows left run as they would have alone,
    so fooled rows cost nothing more. Under EoT (a randomised model) no row stops: one noisy pass
    proves nothing. Stopped rows are masked, and dropped every ``HOST_CHECK_EVERY`` steps."""

    def loss_and_gradient(rows: _Rows) -> tuple[Tensor, Tensor, Tensor]:
        gradient = torch.zeros_like(rows.x_adv)
        for _ in range(eot):  # expectation over transformation for randomised models
            x = rows.x_adv.detach().requires_grad_(True)
            with torch.enable_grad():
                out = logits(x)
                values = loss(out, rows.labels, rows.targets)
                gradient += torch.autograd.grad(values.sum(), x)[0]
        return out.detach(), values.detach(), gradient / eot

    never = torch.iinfo(torch.long).max  # no attempt has this number
    earliest_settled = torch.full((len(images),), never, device=images.device)  # per image (there are fewer)

    def stop_settled(rows: _Rows, out: Tensor) -> None:
        if eot > 1:
            return
        settled = _settled(out, rows.labels) & rows.running
        earliest_settled.scatter_reduce_(0, rows.image, torch.where(settled, rows.attempt, never), "amin")
        rows.running &= rows.attempt < earliest_settled[rows.image]

    start = _random_start(images, radii, norm, draws)
    found = start.clone()
    n = len(images)
    zeros = torch.zeros(n, device=images.device)
    rows = _Rows(position=torch.arange(n, device=images.device), running=torch.ones_like(labels, dtype=torch.bool),
                 image=image, attempt=attempt, images=images, labels=labels, targets=targets, radii=radii,
                 x_adv=start, x_previous=start, x_best=start.clone(), gradient=torch.zeros_like(start),
                 gradient_best=torch.zeros_like(start), best=zeros, step=per_row(2.0 * radii, images.dim()).clone(),
                 losses=torch.zeros(n, steps, device=images.device), best_at_checkpoint=zeros,
                 halved_at_checkpoint=torch.ones(n, dtype=torch.bool, device=images.device))
    out, current, rows.gradient = loss_and_gradient(rows)
    rows.gradient_best, rows.best, rows.best_at_checkpoint = rows.gradient.clone(), current.clone(), current.clone()
    stop_settled(rows, out)
    schedule = _Schedule(steps)
    for i in range(steps):
        if not rows.compact(i):
            break
        with torch.no_grad():
            momentum = rows.x_adv - rows.x_previous
            rows.x_previous = rows.x_adv
            weight = MOMENTUM if i > 0 else 1.0
            direction = rows.gradient.sign() if norm == "linf" else normalized(rows.gradient, norm)
            moved = project(rows.x_adv + rows.step * direction, rows.images, rows.radii, norm)
            rows.x_adv = project(rows.x_adv + (moved - rows.x_adv) * weight + momentum * (1 - weight), rows.images,
                                 rows.radii, norm)
        out, current, rows.gradient = loss_and_gradient(rows)
        with torch.no_grad():
            wrong = per_row((out.argmax(1) != rows.labels) & rows.running, images.dim())
            found[rows.position] = torch.where(wrong, rows.x_adv, found[rows.position])
            rows.losses[:, i] = current
            improved = current > rows.best
            rows.x_best = torch.where(per_row(improved, images.dim()), rows.x_adv, rows.x_best)
            rows.gradient_best = torch.where(per_row(improved, images.dim()), rows.gradient, rows.gradient_best)
            rows.best = torch.where(improved, current, rows.best)
            interval = schedule.tick()
            if interval is not None:
                # rises among the last `interval` steps; like the reference, index −1 wraps to the last column
                rises = sum((rows.losses[:, i - j] > rows.losses[:, i - j - 1]).float() for j in range(interval))
                stalled = ~rows.halved_at_checkpoint & (rows.best_at_checkpoint >= rows.best)
                halve = (rises <= interval * rho) | stalled
                rows.halved_at_checkpoint, rows.best_at_checkpoint = halve, rows.best.clone()
                halve = per_row(halve, images.dim())
                rows.step = torch.where(halve, rows.step / 2.0, rows.step)
                rows.x_adv = torch.where(halve, rows.x_best, rows.x_adv)
                rows.gradient = torch.where(halve, rows.gradient_best, rows.gradient)
            stop_settled(rows, out)
    return found


def apgd(logits: Logits, images: Tensor, labels: Tensor, radii: Tensor, streams: ImageStreams, *, norm: str,
         loss: str = "ce", targets: int = 0, restarts: int = 1, steps: int = 100, rho: float = 0.75,
         eot: int = 1, max_rows: int | None = None) -> Tensor:
    """Adversarial rows (R, C, H, W) of APGD: ``loss`` "ce" or "dlr" untargeted, or with
    ``targets`` = k the targeted DLR loss against each of the k next classes; ``radii`` (R,) and
    ``streams`` are per row.

    Every target × restart is an attempt, numbered target-major, that draws its start from
    repetition ``number`` of the row's stream; a row's result is its earliest attempt that fools
    it. Attempts run as rows of one batch, as many as fit in ``max_rows`` rows (default: the rows
    given), on the rows earlier runs left robust; any grouping gives the same result."""
    if norm not in NORMS or loss not in LOSSES:
        raise ValueError(f"APGD takes norm in {NORMS} and loss in {LOSSES}, not {norm!r} and {loss!r}")
    if targets:
        with torch.no_grad():
            ranked = target_classes(logits(images), targets)
    row_loss = targeted_dlr_loss if targets else dlr_loss if loss == "dlr" else _cross_entropy

    def run(active: Tensor, numbers: range) -> Tensor:
        rows, attempt = attempt_rows(active, numbers)
        chosen = ranked[attempt // restarts, rows] if targets else None
        draws = Draws(len(rows), images.device, ImageStreams.cat([streams[active].repetition(number)
                                                                   for number in numbers]))
        image = torch.arange(len(active), device=images.device).repeat(len(numbers))
        found = _single_run(logits, images[rows], labels[rows], chosen, radii[rows], draws, image, attempt, norm=norm,
                            loss=row_loss, steps=steps, rho=rho, eot=eot)
        return found.view(len(numbers), len(active), *images.shape[1:])

    return first_success(logits, images, labels, max(targets, 1) * restarts, run, max_rows)


def _cross_entropy(logits: Tensor, labels: Tensor, _: Tensor | None = None) -> Tensor:
    return F.cross_entropy(logits, labels, reduction="none")
