"""The plan and the status of a sweep as text tables."""

from __future__ import annotations

from collections.abc import Sequence

from tabulate import tabulate

from .plan import WorkUnit
from .status import STATES, UnitStatus


def _cells(unit: WorkUnit) -> str:
    text = ",".join(unit.cells)
    if unit.kind == "attack":
        text += f" @ {unit.options['eps']}"
    return text if len(text) <= 48 else text[:45] + "..."


def _shard(unit: WorkUnit) -> str:
    return f"{unit.shard[0] + 1}/{unit.shard[1]}" if unit.shard else ""


def plan_table(units: Sequence[WorkUnit], device_kind: str, missing: Sequence[str]) -> str:
    rows = [[u.id, u.model, u.kind, _cells(u), _shard(u), u.images, round(u.minutes, 2)] for u in units]
    table = tabulate(rows, ["unit", "model", "kind", "cells", "shard", "images", "est. min"], tablefmt="github")
    total = sum(u.minutes for u in units)
    lines = [table, "", f"{len(units)} units, about {total / 60:.1f} GPU-hours on {device_kind} "
             f"({total:.0f} minutes; the estimate is explained in docs/sweeps.md)"]
    if missing:
        lines += ["", f"missing here ({len(missing)}; `sweep run` refuses until they exist):"]
        lines += [f"  {m}" for m in missing]
    return "\n".join(lines)


def status_table(status: Sequence[UnitStatus]) -> str:
    rows = [[s.unit.id, s.unit.model, s.unit.kind, _cells(s.unit), _shard(s.unit), s.state,
             f"{s.cells_done}/{s.cells_total}"] for s in status]
    table = tabulate(rows, ["unit", "model", "kind", "cells", "shard", "state", "cells done"], tablefmt="github")
    counts = ", ".join(f"{sum(s.state == state for s in status)} {state}" for state in STATES)
    left = sum(s.minutes_left for s in status)
    lines = [table, "", f"{counts}; about {left:.0f} unit-minutes of work left"]
    for s in (s for s in status if s.state == "failed"):
        lines.append(f"failed {s.unit.id}: {s.error}" + (f" (log: {s.log})" if s.log else ""))
    return "\n".join(lines)
