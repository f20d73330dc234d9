"""Shared pieces of the AutoAttack family, which work on *rows*: one (image, ε) pair each, with
its own radius and random stream, so a sweep over ε and the points still robust after earlier
attacks form one batch, and every row's result depends on nothing but the row."""

from __future__ import annotations

from collections.abc import Callable, Iterable

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


Attempt = Callable[[Tensor], Tensor]


def first_success(logits: Logits, images: Tensor, labels: Tensor, attempts: Iterable[Attempt]) -> Tensor:
    """Run ``attempts`` in order (restarts, target classes), each on the rows that no earlier
    attempt has fooled, and keep every row's first adversarial example (the clean image where
    none was found). An attempt maps the indices of its rows to their candidate images."""
    adversarial = images.clone()
    with torch.no_grad():
        robust = logits(images).argmax(1) == labels
    for attempt in attempts:
        active = robust.nonzero().squeeze(1)
        if len(active) == 0:
            break
        candidates = attempt(active)
        with torch.no_grad():
            fooled = logits(candidates).argmax(1) != labels[active]
        adversarial[active[fooled]] = candidates[fooled]
        robust[active[fooled]] = False
    return adversarial
