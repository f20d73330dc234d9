"""Shared pieces of the AutoAttack family, which work on *rows*: one (image, ε) pair each, with
its own radius and random stream, so a sweep over ε and the points still robust after earlier
attacks form one batch, and every row's result depends on nothing but the row."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
from torch import Tensor, nn


def per_row(values: Tensor, ndim: int) -> Tensor:
    """(R,) → (R, 1, 1, 1) for an ``ndim``-dimensional batch."""
    return values.view(-1, *([1] * (ndim - 1)))


def norms(x: Tensor, norm: str) -> Tensor:
    """The L∞ or L2 norm of every row of a batch, (R,)."""
    flat = x.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)


def normalized(x: Tensor, norm: str) -> Tensor:
    """Every row divided by its norm (plus 1e-12, so a zero row stays zero)."""
    return x / per_row(norms(x, norm) + 1e-12, x.dim())


def project(x: Tensor, x0: Tensor, radii: Tensor, norm: str) -> Tensor:
    """``x`` pulled into the ε-ball around ``x0`` (per-row radius) and into [0, 1]."""
    delta = x - x0
    if norm == "linf":
        bound = per_row(radii, x.dim())
        delta = torch.maximum(torch.minimum(delta, bound), -bound)
    else:
        delta = normalized(delta, norm) * per_row(torch.minimum(radii, norms(delta, norm)), x.dim())
    return (x0 + delta).clamp(0, 1)


Logits = Callable[[Tensor], Tensor]


def logits_function(model: nn.Module, autocast: bool) -> Logits:
    """The model's float32 logits, with its passes under bf16 autocast when asked."""

    def logits(x: Tensor) -> Tensor:
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=autocast):
            return model(x).float()

    return logits


def top_hits(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample top-1 and top-5 hits (top-k over all classes when there are fewer than five)."""
    hits = logits.topk(min(5, logits.shape[1]), dim=1).indices == labels[:, None]
    return hits[:, 0], hits.any(dim=1)


def target_classes(logits: Tensor, count: int) -> Tensor:
    """The ``count`` classes ranked just below the top one, (count, R): AutoAttack's targets."""
    order = logits.argsort(dim=1, descending=True)
    return order[:, 1:count + 1].T


HOST_CHECK_EVERY = 10  # iterations between host reads of the running rows on an accelerator


def host_check_interval(device: torch.device) -> int:
    """Iterations between host reads of which rows still run: every one on the CPU, where a read
    costs nothing and a masked row costs work; ``HOST_CHECK_EVERY`` on an accelerator, where each
    read stalls the queue of kernels."""
    return 1 if device.type == "cpu" else HOST_CHECK_EVERY


@dataclass
class RowState:
    """The per-row state of an iterative attack, every field with its rows along dim 0: ``position``
    is each row's place in the output, ``running`` marks the rows still updating.

    The loop body masks its updates with ``running`` and never reads it back, so on an
    accelerator it only queues kernels; every :func:`host_check_interval` iterations
    :meth:`compact` reads it once and drops the stopped rows, so finished rows soon stop costing
    work. A row's numbers do not depend on when it is dropped."""

    position: Tensor
    running: Tensor

    def compact(self, iteration: int) -> bool:
        """At every :func:`host_check_interval`-th iteration (from 0), keep only the running rows;
        False when none is left (the loop can end)."""
        if iteration % host_check_interval(self.running.device):
            return True
        kept = self.running.nonzero().squeeze(1)
        if len(kept) < len(self.running):
            for field in fields(self):
                value = getattr(self, field.name)
                if value is not None:
                    setattr(self, field.name, value[kept])
        return len(kept) > 0


# (rows, attempt numbers) → the rows' candidates of every attempt, (attempts, rows, C, H, W)
AttemptRun = Callable[[Tensor, range], Tensor]


def attempt_rows(active: Tensor, numbers: range) -> tuple[Tensor, Tensor]:
    """The rows of one run of attempts ``numbers`` on rows ``active``, attempt-major: each row's
    index into the attack's rows, and its attempt's number."""
    chosen = active.repeat(len(numbers))
    attempt = torch.arange(numbers.start, numbers.stop, device=active.device).repeat_interleave(len(active))
    return chosen, attempt


def first_success(logits: Logits, images: Tensor, labels: Tensor, attempts: int, run: AttemptRun,
                  max_rows: int | None = None) -> Tensor:
    """Every row's adversarial example from the first of ``attempts`` (restarts, target classes,
    in order) that fools it; the clean image where none does.

    ``run`` runs a group of consecutive attempts as rows of one batch, on the rows no earlier
    group has fooled: as many attempts as fit in ``max_rows`` rows (default: the rows given, the
    memory of one attempt on all of them), at least one. An attempt's candidate depends only on
    the row and the attempt's number, so the result is the one of running the attempts one after
    the other, each on the rows still robust, whatever the grouping."""
    adversarial = images.clone()
    with torch.no_grad():
        robust = logits(images).argmax(1) == labels
    budget, done = max_rows or len(images), 0
    while done < attempts:
        active = robust.nonzero().squeeze(1)
        if len(active) == 0:
            break
        numbers = range(done, min(done + max(budget // len(active), 1), attempts))
        candidates = run(active, numbers)
        with torch.no_grad():
            predicted = logits(candidates.flatten(0, 1)).argmax(1).view(len(numbers), len(active))
        fooled = predicted != labels[active]
        success = fooled.any(0)
        earliest = candidates[fooled.int().argmax(0), torch.arange(len(active), device=images.device)]
        adversarial[active] = torch.where(per_row(success, images.dim()), earliest, images[active])
        robust[active] = ~success
        done = numbers.stop
    return adversarial
