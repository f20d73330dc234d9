"""One listing of everything the zoo offers: architectures and released checkpoints."""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import torch

from .registry import architecture_info, build_architecture, list_models
from .zoo import list_checkpoints


@dataclass(frozen=True)
class CatalogEntry:
    """A row of ``gcp-robust models``."""

    name: str
    kind: str  # "architecture" or "checkpoint"
    architecture: str
    family: str
    head: str
    reduction_dim: int | None
    params: int
    num_classes: int
    input_size: int
    aliases: tuple[str, ...] = ()
    lr_mode: str | None = None
    top1: float | None = None
    top5: float | None = None
    filename: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@functools.lru_cache(maxsize=None)
def parameter_count(architecture: str) -> int:
    """Number of parameters, counted on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        model = build_architecture(architecture)
    return sum(p.numel() for p in model.parameters())


def _architecture_entry(name: str) -> CatalogEntry:
    info = architecture_info(name)
    return CatalogEntry(
        name=info.name, kind="architecture", architecture=info.name, family=info.family, head=info.head,
        reduction_dim=info.reduction_dim, params=parameter_count(info.name), num_classes=info.num_classes,
        input_size=info.input_size, aliases=info.aliases,
    )


def catalog(pattern: str | None = None) -> list[CatalogEntry]:
    """Architectures, then checkpoint records, filtered by a case-insensitive glob."""
    entries = [_architecture_entry(name) for name in list_models(pattern)]
    for record in list_checkpoints(pattern):
        arch = _architecture_entry(record.architecture)
        entries.append(CatalogEntry(
            name=record.name, kind="checkpoint", architecture=record.architecture, family=arch.family,
            head=record.head, reduction_dim=record.reduction_dim, params=arch.params,
            num_classes=arch.num_classes, input_size=arch.input_size, lr_mode=record.lr_mode,
            top1=record.top1, top5=record.top5, filename=record.filename,
        ))
    return entries
