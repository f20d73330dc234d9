"""The results store (SQLite), run summaries as JSON, and the comparison of two summaries.

A run is identified by its configuration; each cell of a run (a corruption at a severity, an
attack at an epsilon, or the clean set) stores counts, so shards and resumed runs add up
exactly and percentages are computed at the end. Writes are short WAL transactions, so several
processes can write one database.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .fileio import atomic_write_text

DEFAULT_DB = Path("runs") / "results.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    config TEXT NOT NULL,
    created TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS cells (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    name TEXT NOT NULL,
    level TEXT NOT NULL,
    n INTEGER NOT NULL,
    top1_errors INTEGER NOT NULL,
    top5_errors INTEGER NOT NULL,
    skipped INTEGER NOT NULL DEFAULT 0,
    mask BLOB,
    PRIMARY KEY (run_id, name, level)
);
"""


@dataclass(frozen=True)
class Cell:
    """Counts of one (run, name, level) cell."""

    name: str
    level: str
    n: int
    top1_errors: int
    top5_errors: int
    skipped: int = 0
    mask: bytes | None = None  # per-sample flags (packed bits), where a cell needs them later

    @property
    def top1_error(self) -> float:
        return self.top1_errors / self.n if self.n else float("nan")


@dataclass(frozen=True)
class Run:
    id: int
    kind: str
    model: str
    config: dict


def run_key(config: Mapping) -> str:
    """A stable identity for a configuration: SHA-256 of its canonical JSON."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class ResultStore:
    """Runs and their cells in one SQLite file."""

    def __init__(self, path: str | Path = DEFAULT_DB) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=60)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=60000")
            with db:  # one short transaction
                yield db
        finally:
            db.close()

    def run(self, kind: str, model: str, config: Mapping) -> Run:
        """The run with this configuration, created when it does not exist yet."""
        key = run_key({"kind": kind, **config})
        text = json.dumps(config, sort_keys=True)
        with self._connect() as db:
            db.execute("INSERT OR IGNORE INTO runs (key, kind, model, config) VALUES (?, ?, ?, ?)",
                       (key, kind, model, text))
            (run_id,) = db.execute("SELECT id FROM runs WHERE key = ?", (key,)).fetchone()
        return Run(run_id, kind, model, dict(config))

    def runs(self, kind: str | None = None, models: list[str] | None = None) -> list[Run]:
        query, args = "SELECT id, kind, model, config FROM runs", []
        if kind:
            query, args = query + " WHERE kind = ?", [kind]
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY id", args).fetchall()
        found = [Run(i, k, m, json.loads(c)) for i, k, m, c in rows]
        return [r for r in found if not models or r.model in models]

    def add_cell(self, run: Run, cell: Cell) -> None:
        """Store a finished cell (replacing an older result of the same cell)."""
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO cells (run_id, name, level, n, top1_errors, top5_errors, skipped, mask) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run.id, cell.name, cell.level, cell.n, cell.top1_errors, cell.top5_errors, cell.skipped, cell.mask),
            )

    def cells(self, run: Run) -> dict[tuple[str, str], Cell]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT name, level, n, top1_errors, top5_errors, skipped, mask FROM cells WHERE run_id = ?",
                (run.id,),
            ).fetchall()
        return {(r[0], r[1]): Cell(*r) for r in rows}


def write_json(path: str | Path, summary: Mapping) -> None:
    """Write a summary atomically, keys in a fixed order, so reruns give identical bytes."""
    atomic_write_text(path, json.dumps(summary, indent=2) + "\n")


# --------------------------------------------------------------------------- comparison

@dataclass(frozen=True)
class Difference:
    metric: str
    baseline: float | None
    current: float | None
    worse_by: float | None  # positive: the current run is worse (percentage points)


def _metrics(summary: Mapping) -> dict[str, tuple[float | None, int]]:
    """Every comparable number of a summary, with its direction (+1: higher is worse)."""
    found: dict[str, tuple[float | None, int]] = {}
    for key in ("clean_error", "mCE", "relative_mCE", "mean_error"):
        if key in summary:
            found[key] = (summary[key], +1)
    for name, rates in summary.get("errors", {}).items():
        for severity, rate in enumerate(rates, start=1):
            found[f"{name}/{severity}"] = (rate, +1)
    if "clean_accuracy" in summary:
        found["clean_accuracy"] = (summary["clean_accuracy"], -1)
    for attack, by_eps in summary.get("robust_accuracy", {}).items():
        for eps, accuracy in by_eps.items():
            found[f"{attack}@{eps}"] = (accuracy, -1)
    for eps, accuracy in summary.get("worst_case", {}).items():
        found[f"worst_case@{eps}"] = (accuracy, -1)
    return found


def compare(baseline: Mapping, current: Mapping) -> list[Difference]:
    """Metric-by-metric differences of two run summaries (errors: up is worse; accuracies: down)."""
    before, after = _metrics(baseline), _metrics(current)
    rows = []
    for metric in sorted(set(before) | set(after), key=lambda m: (m not in before, m)):
        old, direction = before.get(metric, (None, +1))
        new, direction = after.get(metric, (None, direction))
        worse = direction * (new - old) if old is not None and new is not None else None
        rows.append(Difference(metric, old, new, worse))
    return rows
