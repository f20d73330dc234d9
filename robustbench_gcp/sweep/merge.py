"""Several results stores into one: runs by identity, cells from the parts of several shards.

What a sweep's units wrote (one store each) becomes one store that ``table`` reads like any
other. Runs merge by their identity key. A cell stored twice with identical outcomes is kept
once; stored twice with different outcomes it is refused, naming both files. The parts of a
cell (chunks and shards, with their coverage masks) from all stores become the cell once they
cover every image, by the same merge the evaluations use when they resume. Everything is
checked in memory before the target is touched, and written in one transaction (a new target
is written beside it and renamed), so a refused or killed merge leaves the target as it was;
a merge that adds nothing writes nothing, so merging again leaves the file byte for byte.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..evaluate.corruption import merge_parts as merge_image_parts
from ..evaluate.parts import part_fits
from ..evaluate.perturbation import merge_parts as merge_video_parts
from ..results import CellPart, ResultStore, check_results_file
from ..stability import counts_from_bytes
from ..summaries import unpack_flags
from .spec import SweepError

_MERGES = {"corruption": merge_image_parts, "shift": merge_image_parts, "perturbation": merge_video_parts}
_CELL = ("n", "top1_errors", "top5_errors", "skipped", "mask")
_PART = ("n", "top1_errors", "top5_errors", "skipped", "mask", "covered")


@dataclass
class MergeReport:
    """What a merge did, for the command's one-line answer."""

    runs: int = 0
    cells_added: int = 0
    cells_already: int = 0
    cells_from_parts: int = 0
    unfinished: list[str] = field(default_factory=list)  # cells still in parts: "model name level"

    def line(self, target: Path) -> str:
        text = (f"{target}: {self.runs} runs; {self.cells_added} cells added ({self.cells_from_parts} joined from "
                f"parts), {self.cells_already} already there")
        if self.unfinished:
            text += f"; {len(self.unfinished)} cells still partial (missing shards), e.g. {self.unfinished[0]}"
        return text


@dataclass
class _Run:
    key: str
    kind: str
    model: str
    config: str
    name: str | None
    created: str
    environments: set[tuple] = field(default_factory=set)  # (package, torch, device, host, recorded)


def run_size(config: dict) -> int:
    """Images (videos) a run evaluates: its limit, else its whole dataset (as ``subset`` selects)."""
    size, limit = int(config["dataset_size"]), config.get("limit")
    return size if limit is None or limit >= size else int(limit)


def cell_size(config: dict, kind: str, name: str) -> int:
    """Images (videos) of one cell: the run's, except a shift run's clean set, which has its own."""
    if kind == "shift" and name == "clean" and config.get("clean"):
        return run_size({**config, "dataset_size": config["clean"]["size"]})
    return run_size(config)


def _read(path: Path) -> tuple[dict[str, _Run], dict[tuple, tuple], dict[tuple, list[tuple]]]:
    """(runs by key, cells by (key, name, level), parts by (key, name, level)) of one store."""
    if not path.is_file():
        raise SweepError(f"{path}: no such results store")
    check_results_file(path)
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT id, key, kind, model, config, name, created FROM runs ORDER BY id").fetchall()
        by_id = {row[0]: _Run(*row[1:]) for row in rows}
        if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'environments'").fetchone():
            for run_id, *environment in db.execute(
                    "SELECT run_id, package, torch, device, host, recorded FROM environments"):
                by_id[run_id].environments.add(tuple(environment))
        cells = {(by_id[r[0]].key, r[1], r[2]): r[3:] for r in db.execute(
            f"SELECT run_id, name, level, {', '.join(_CELL)} FROM cells ORDER BY run_id, name, level")}
        parts: dict[tuple, list[tuple]] = {}
        for r in db.execute(f"SELECT run_id, name, level, {', '.join(_PART)} FROM parts ORDER BY rowid"):
            parts.setdefault((by_id[r[0]].key, r[1], r[2]), []).append(r[3:])
    except sqlite3.DatabaseError as error:
        raise SweepError(f"{path}: cannot read it as a results store ({error})") from None
    finally:
        db.close()
    return {run.key: run for run in by_id.values()}, cells, parts


def _outcomes(kind: str, part: tuple, size: int) -> np.ndarray:
    """Per-position outcomes of a part: correct flags (images) or per-video counts."""
    if kind == "perturbation":
        return counts_from_bytes(part[4])[:size]
    return unpack_flags(part[4])[:size]


def merge_stores(sources: Sequence[str | Path], target: str | Path) -> MergeReport:
    """Merge ``sources`` into ``target`` (created when absent); SweepError on a conflict."""
    target = Path(target)
    runs: dict[str, _Run] = {}
    cells: dict[tuple, tuple] = {}
    origin: dict[tuple, Path] = {}
    parts: dict[tuple, list[tuple]] = {}
    part_origin: dict[tuple, list[Path]] = {}
    before: set[tuple] = set()
    stores = ([target] if target.exists() else []) + [Path(s) for s in sources if Path(s).resolve() !=
                                                         (target.resolve() if target.exists() else None)]
    for path in stores:
        found_runs, found_cells, found_parts = _read(path)
        for key, run in found_runs.items():
            runs.setdefault(key, run).environments |= run.environments
            if runs[key].name is None and run.name:
                runs[key].name = run.name
        for cell, values in found_cells.items():
            if cell in cells and cells[cell] != values:
                raise SweepError(f"cell {cell[1]} {cell[2]} of {runs[cell[0]].model} differs between {origin[cell]} "
                                 f"and {path}: they are not the same evaluation; merge them into separate stores")
            cells.setdefault(cell, values)
            origin.setdefault(cell, path)
            if path == target and target.exists():
                before.add(cell)
        for cell, found in found_parts.items():
            for part in found:
                if part not in parts.setdefault(cell, []):
                    parts[cell].append(part)
                    part_origin.setdefault(cell, []).append(path)
    report = MergeReport(runs=len(runs))
    joined: dict[tuple, tuple] = {}
    for cell, found in parts.items():
        if cell in cells:
            continue
        run = runs[cell[0]]
        size = cell_size(json.loads(run.config), run.kind, cell[1])
        cell_parts = [CellPart(cell[1], cell[2], *part) for part in found]
        for part, path in zip(cell_parts, part_origin[cell]):
            if not part_fits(part, size):
                raise SweepError(f"{path}: a stored part of cell {cell[1]} {cell[2]} of {run.model} does not fit "
                                 f"its {size} images (a damaged store); leave that file out")
        _check_overlaps(run, cell, found, part_origin[cell], size)
        merged = _MERGES[run.kind](cell[1], cell[2], cell_parts, size)
        if merged is not None:
            joined[cell] = (merged.n, merged.top1_errors, merged.top5_errors, merged.skipped, merged.mask)
        else:
            report.unfinished.append(f"{run.model} {cell[1]} {cell[2]}")
    new_cells = {c: v for c, v in cells.items() if c not in before}
    new_cells.update(joined)
    report.cells_added, report.cells_already, report.cells_from_parts = len(new_cells), len(before), len(joined)
    _write(target, runs, new_cells, {c: p for c, p in parts.items() if c not in cells and c not in joined})
    return report


def _check_overlaps(run: _Run, cell: tuple, found: list[tuple], origins: list[Path], size: int) -> None:
    """Parts that evaluated the same images must agree on them; else name both files."""
    covered = [unpack_flags(p[5])[:size] for p in found]
    for i in range(len(found)):
        for j in range(i):
            both = covered[i] & covered[j]
            if both.any() and not np.array_equal(_outcomes(run.kind, found[i], size)[both],
                                                 _outcomes(run.kind, found[j], size)[both]):
                raise SweepError(f"cell {cell[1]} {cell[2]} of {run.model} has different outcomes for the same images "
                                 f"in {origins[j]} and {origins[i]}: they are not the same evaluation")


def _write(target: Path, runs: dict[str, _Run], cells: dict[tuple, tuple], parts: dict[tuple, list[tuple]]) -> None:
    """Add what is new to ``target`` in one transaction; nothing at all when nothing is new."""
    existing = set()
    if target.exists():
        db = sqlite3.connect(f"{target.resolve().as_uri()}?mode=ro", uri=True)
        try:
            existing = {row[0] for row in db.execute("SELECT key FROM runs")}
            stored_parts = {(row[0], row[1], row[2], *row[3:]) for row in db.execute(
                f"SELECT r.key, p.name, p.level, {', '.join('p.' + c for c in _PART)} FROM parts p "
                "JOIN runs r ON r.id = p.run_id")}
        finally:
            db.close()
        parts = {c: [p for p in ps if (*c, *p) not in stored_parts] for c, ps in parts.items()}
        parts = {c: ps for c, ps in parts.items() if ps}
    if target.exists() and not cells and not parts and set(runs) <= existing:
        return
    fresh = not target.exists()
    path = target.with_name(f".{target.name}.merging-{os.getpid()}") if fresh else target
    if fresh:
        path.unlink(missing_ok=True)
        ResultStore(path)  # the schema
    db = sqlite3.connect(path, timeout=60)
    try:
        db.execute("PRAGMA busy_timeout=60000")
        db.execute("BEGIN IMMEDIATE")
        for key, run in runs.items():
            if key not in existing:
                db.execute("INSERT INTO runs (key, kind, model, config, created, name) VALUES (?, ?, ?, ?, ?, ?)",
                           (key, run.kind, run.model, run.config, run.created, run.name))
        ids = dict(db.execute("SELECT key, id FROM runs"))
        db.executemany(f"INSERT INTO cells (run_id, name, level, {', '.join(_CELL)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       [(ids[c[0]], c[1], c[2], *v) for c, v in sorted(cells.items())])
        db.executemany("DELETE FROM parts WHERE run_id = ? AND name = ? AND level = ?",
                       [(ids[c[0]], c[1], c[2]) for c in sorted(cells)])
        db.executemany(f"INSERT INTO parts (run_id, name, level, {', '.join(_PART)}) VALUES ({', '.join('?' * 9)})",
                       [(ids[c[0]], c[1], c[2], *p) for c, ps in sorted(parts.items()) for p in ps])
        db.executemany("INSERT OR IGNORE INTO environments (run_id, package, torch, device, host, recorded) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       [(ids[key], *e) for key, run in runs.items() for e in sorted(run.environments)])
        db.commit()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file before it is renamed
    except BaseException:
        db.rollback()
        db.close()
        if fresh:
            path.unlink(missing_ok=True)
        raise
    db.close()
    if fresh:
        os.replace(path, target)
