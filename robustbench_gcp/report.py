"""Text tables for the command line (tabulate)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from tabulate import tabulate

from .models.catalog import CatalogEntry


def _millions(count: int) -> str:
    return f"{count / 1e6:.2f}M"


def catalog_table(entries: Sequence[CatalogEntry], fmt: str = "table") -> str:
    """The model listing as a text table or as JSON (a list of objects)."""
    if fmt == "json":
        return json.dumps([entry.to_dict() for entry in entries], indent=2)
    rows = [
        (
            e.name, e.kind, e.architecture, e.head, e.reduction_dim or "", _millions(e.params),
            e.input_size, e.lr_mode or "", e.top1 if e.top1 is not None else "",
            e.top5 if e.top5 is not None else "", ", ".join(e.aliases),
        )
        for e in entries
    ]
    headers = ("name", "kind", "architecture", "head", "dim", "params", "input", "lr_mode", "top1", "top5", "aliases")
    return tabulate(rows, headers=headers, tablefmt="github")
