"""The results store (SQLite) and run summaries as JSON.

A run is identified by its configuration; each cell of a run (a corruption at a severity, an
attack at an epsilon, or the clean set) stores counts, so shards and resumed runs add up
exactly and percentages are computed at the end. Writes are short WAL transactions, so several
processes can write one database.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import Error
from .fileio import atomic_write_text

DEFAULT_DB = Path("runs") / "results.sqlite"
_COLUMNS = {
    "runs": ["id", "key", "kind", "model", "config", "created"],
    "cells": ["run_id", "name", "level", "n", "top1_errors", "top5_errors", "skipped", "mask"],
    "parts": ["run_id", "name", "level", "n", "top1_errors", "top5_errors", "skipped", "mask", "covered"],
    "environments": ["run_id", "package", "torch", "device", "host", "recorded"],
}
_ADDED_TABLES = {"parts", "environments"}  # tables newer versions add to an existing database
_ADDED_COLUMNS = {"runs": ["name"]}  # columns newer versions add to an existing database


class ResultsError(Error, ValueError):
    """A results database that cannot be used, with the fix in the message."""

_CELL_COUNTS = """
    run_id INTEGER NOT NULL REFERENCES runs(id),
    name TEXT NOT NULL,
    level TEXT NOT NULL,
    n INTEGER NOT NULL,
    top1_errors INTEGER NOT NULL,
    top5_errors INTEGER NOT NULL,
    skipped INTEGER NOT NULL DEFAULT 0,"""
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    config TEXT NOT NULL,
    created TEXT NOT NULL DEFAULT (datetime('now')),
    name TEXT
);
CREATE TABLE IF NOT EXISTS cells ({_CELL_COUNTS}
    mask BLOB,
    PRIMARY KEY (run_id, name, level)
);
CREATE TABLE IF NOT EXISTS parts ({_CELL_COUNTS}
    mask BLOB NOT NULL,
    covered BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS parts_of_cell ON parts (run_id, name, level);
CREATE TABLE IF NOT EXISTS environments (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    package TEXT NOT NULL,
    torch TEXT NOT NULL,
    device TEXT NOT NULL,
    host TEXT NOT NULL,
    recorded TEXT NOT NULL DEFAULT (datetime('now')),
    UNIQUE (run_id, package, torch, device, host)
);
"""


@dataclass(frozen=True)
class Environment:
    """What computed a run's cells (a run resumed elsewhere has several): for its provenance."""

    package: str
    torch: str
    device: str
    host: str
    recorded: str = ""


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
class CellPart:
    """Counts of a cell over some of its images (one chunk of a chunked run): ``covered`` has the
    bits of the positions it evaluated, ``mask`` those classified correctly (packed bits)."""

    name: str
    level: str
    n: int
    top1_errors: int
    top5_errors: int
    skipped: int
    mask: bytes
    covered: bytes


@dataclass(frozen=True)
class Run:
    id: int
    kind: str
    model: str
    config: dict
    name: str | None = None  # the user's --name label
    created: str = ""


def run_key(config: Mapping) -> str:
    """A stable identity for a configuration: SHA-256 of its canonical JSON."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def check_results_file(path: Path) -> None:
    """Refuse a file that is not SQLite, or another application's database, without touching it."""
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            names = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            columns = {name: [row[1] for row in db.execute(f"PRAGMA table_info({name!r})")] for name in names}
        finally:
            db.close()
    except sqlite3.DatabaseError as error:
        raise ResultsError(f"--db {path} is not an SQLite results database ({error}); "
                           "pass a new file name or a database written by gcp-robust") from None
    ours = {name: [c for c in cols if c not in _ADDED_COLUMNS.get(name, ())]
            for name, cols in columns.items() if name in _COLUMNS}
    required = set(_COLUMNS) - _ADDED_TABLES
    if columns and (not required <= set(ours) or any(ours[n] != _COLUMNS[n] for n in ours)):
        raise ResultsError(f"--db {path} is another application's database (tables: "
                           f"{', '.join(sorted(columns))}); pass a new file name or one written by gcp-robust")


class ResultStore:
    """Runs and their cells in one SQLite file."""

    def __init__(self, path: str | Path = DEFAULT_DB) -> None:
        self.path = Path(path)
        self.environment: Environment | None = None  # recorded with every cell or part written
        if self.path.is_dir():
            raise ResultsError(f"--db {self.path} is a directory; pass a database file, "
                               f"e.g. {self.path / 'results.sqlite'}")
        if self.path.exists():
            check_results_file(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for target in (self.path, self.path.parent):  # fail now, not after a long run
            if target.exists() and not os.access(target, os.W_OK):
                raise ResultsError(f"--db {self.path}: cannot write to {target} (read-only); pass a writable path")
        try:
            with self._connect() as db:
                db.executescript(_SCHEMA)
                for table, added in _ADDED_COLUMNS.items():
                    present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                    for column in added:
                        if column not in present:
                            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")
                (schema,) = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'runs'"
                                       ).fetchone()
            if not _autoincrement(schema):  # a database from before: converted once, not on every open
                _never_reuse_run_ids(self.path)
        except sqlite3.OperationalError as error:
            raise ResultsError(f"--db {self.path}: cannot write to it ({error}); pass a writable path") from None

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=60)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=60000")
            db.execute("PRAGMA foreign_keys=ON")
            with db:  # one short transaction
                yield db
        except sqlite3.DatabaseError as error:
            if type(error) is not sqlite3.DatabaseError and "malformed" not in str(error):
                raise  # locks, constraint violations: not the file's fault
            raise ResultsError(f"--db {self.path} is damaged ({error}); restore it from a copy, or pass a new "
                               "file name") from None
        finally:
            db.close()

    def _check_run(self, db: sqlite3.Connection, run: Run) -> None:
        """A writer whose run was deleted meanwhile stops, instead of writing cells no run owns."""
        if db.execute("SELECT 1 FROM runs WHERE id = ?", (run.id,)).fetchone() is None:
            raise ResultsError(f"run {run.id} was deleted from {self.path} while this command was writing it "
                               "(gcp-robust runs --delete): stopped, nothing more is written; run the command "
                               "again to evaluate it anew")

    def run(self, kind: str, model: str, config: Mapping, name: str | None = None) -> Run:
        """The run with this configuration, created when it does not exist yet; ``name`` labels it
        (a label, not part of the identity: naming a run again renames it)."""
        key = run_key({"kind": kind, **config})
        text = json.dumps(config, sort_keys=True)
        with self._connect() as db:
            found = db.execute("SELECT id, name FROM runs WHERE key = ?", (key,)).fetchone()
            if found is None:  # a stored run is only read: its file stays as it was
                db.execute("INSERT INTO runs (key, kind, model, config, name) VALUES (?, ?, ?, ?, ?)",
                           (key, kind, model, text, name))
            elif name and name != found[1]:
                db.execute("UPDATE runs SET name = ? WHERE key = ?", (name, key))
            (run_id,) = db.execute("SELECT id FROM runs WHERE key = ?", (key,)).fetchone()
        return self.get(run_id)

    def existing_run(self, kind: str, config: Mapping) -> Run | None:
        """The stored run of this configuration, or None; unlike ``run`` it writes nothing."""
        key = run_key({"kind": kind, **config})
        with self._connect() as db:
            found = db.execute("SELECT id FROM runs WHERE key = ?", (key,)).fetchone()
        return self.get(found[0]) if found else None

    def runs(self, kind: str | None = None, models: list[str] | None = None) -> list[Run]:
        """Stored runs, oldest first, optionally of one kind and of some models."""
        query, args = "SELECT id, kind, model, config, name, created FROM runs", []
        if kind:
            query, args = query + " WHERE kind = ?", [kind]
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY id", args).fetchall()
        found = [Run(i, k, m, self._config(i, c), n, t) for i, k, m, c, n, t in rows]
        return [r for r in found if not models or r.model in models]

    def _config(self, run_id: int, text: str) -> dict:
        try:
            config = json.loads(text)
        except (TypeError, ValueError):
            config = None
        if not isinstance(config, dict):
            raise ResultsError(f"--db {self.path}: run {run_id} has no readable configuration (not a JSON object); "
                               f"remove it with `gcp-robust runs --db {self.path} --delete {run_id}`")
        return config

    def get(self, run_id: int) -> Run:
        found = [r for r in self.runs() if r.id == run_id]
        if not found:
            raise ResultsError(f"{self.path} has no run {run_id}; `gcp-robust runs` lists them")
        return found[0]

    def find(self, selector: str) -> list[Run]:
        """Runs by id or by --name label (several runs may share a label)."""
        found = [r for r in self.runs() if str(r.id) == selector or r.name == selector]
        if not found:
            raise self._no_run(selector)
        return found

    def _no_run(self, selector: str) -> ResultsError:
        return ResultsError(f"{self.path} has no run with id or name {selector!r}; `gcp-robust runs` lists them")

    def delete(self, selector: str) -> list[tuple[int, str | None, int]]:
        """Remove the runs with this id or --name label and their cells, without reading their
        configurations (so a damaged one can go too); (id, label, cells removed) of each."""
        with self._connect() as db:
            rows = db.execute("SELECT id, name FROM runs WHERE CAST(id AS TEXT) = ? OR name = ? ORDER BY id",
                              (selector, selector)).fetchall()
            if not rows:
                raise self._no_run(selector)
            removed = []
            for run_id, name in rows:
                cells = db.execute("DELETE FROM cells WHERE run_id = ?", (run_id,)).rowcount
                db.execute("DELETE FROM parts WHERE run_id = ?", (run_id,))
                db.execute("DELETE FROM environments WHERE run_id = ?", (run_id,))
                db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
                removed.append((run_id, name, cells))
        return removed

    def _record_environment(self, db: sqlite3.Connection, run: Run) -> None:
        if self.environment is not None:
            e = self.environment
            db.execute("INSERT OR IGNORE INTO environments (run_id, package, torch, device, host) "
                       "VALUES (?, ?, ?, ?, ?)", (run.id, e.package, e.torch, e.device, e.host))

    def environments(self, run: Run) -> list[Environment]:
        """What computed the run's cells, first recorded first (none for runs of older versions)."""
        with self._connect() as db:
            rows = db.execute("SELECT package, torch, device, host, recorded FROM environments WHERE run_id = ? "
                              "ORDER BY recorded, rowid", (run.id,)).fetchall()
        return [Environment(*row) for row in rows]

    def add_cell(self, run: Run, cell: Cell) -> None:
        """Store a finished cell (replacing an older result of the same cell) and drop its parts."""
        with self._connect() as db:
            self._check_run(db, run)
            self._record_environment(db, run)
            db.execute("DELETE FROM parts WHERE run_id = ? AND name = ? AND level = ?", (run.id, cell.name, cell.level))
            db.execute(
                "INSERT OR REPLACE INTO cells (run_id, name, level, n, top1_errors, top5_errors, skipped, mask) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run.id, cell.name, cell.level, cell.n, cell.top1_errors, cell.top5_errors, cell.skipped, cell.mask),
            )

    def add_part(self, run: Run, part: CellPart) -> None:
        """Store the counts of a cell over one chunk of its images."""
        with self._connect() as db:
            self._check_run(db, run)
            self._record_environment(db, run)
            db.execute(
                "INSERT INTO parts (run_id, name, level, n, top1_errors, top5_errors, skipped, mask, covered) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run.id, part.name, part.level, part.n, part.top1_errors, part.top5_errors, part.skipped, part.mask,
                 part.covered),
            )

    def delete_parts(self, run: Run, name: str, level: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM parts WHERE run_id = ? AND name = ? AND level = ?", (run.id, name, level))

    def parts(self, run: Run) -> dict[tuple[str, str], list[CellPart]]:
        """Stored parts of unfinished cells, by cell, in the order they were written."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT name, level, n, top1_errors, top5_errors, skipped, mask, covered FROM parts "
                "WHERE run_id = ? ORDER BY rowid", (run.id,),
            ).fetchall()
        found: dict[tuple[str, str], list[CellPart]] = {}
        for row in rows:
            found.setdefault((row[0], row[1]), []).append(CellPart(*row))
        return found

    def cells(self, run: Run) -> dict[tuple[str, str], Cell]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT name, level, n, top1_errors, top5_errors, skipped, mask FROM cells WHERE run_id = ?",
                (run.id,),
            ).fetchall()
        return {(r[0], r[1]): Cell(*r) for r in rows}


def _never_reuse_run_ids(path: Path) -> None:
    """Give a database from before AUTOINCREMENT run ids that are never handed out again, so a
    deleted run's id (and anything a writer still adds under it) can never become another run's.
    Cells and parts that no run owns are dropped. One transaction, without foreign keys (the
    old table is dropped under its cells)."""
    db = sqlite3.connect(path, timeout=60, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout=60000")
        db.execute("BEGIN IMMEDIATE")
        (schema,) = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'runs'").fetchone()
        if not _autoincrement(schema):  # read again under the lock: another process may have converted it
            _renumbered_runs(db, schema)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    finally:
        db.close()


def _autoincrement(schema: str) -> bool:
    return "AUTOINCREMENT" in schema.upper()


def _renumbered_runs(db: sqlite3.Connection, schema: str) -> None:
    highest = max(db.execute(f"SELECT COALESCE(MAX({column}), 0) FROM {table}").fetchone()[0]
                  for table, column in (("runs", "id"), ("cells", "run_id"), ("parts", "run_id")))
    columns = ", ".join(_COLUMNS["runs"] + _ADDED_COLUMNS["runs"])
    db.execute(schema.replace("CREATE TABLE runs", "CREATE TABLE runs_ids", 1)
               .replace("INTEGER PRIMARY KEY", "INTEGER PRIMARY KEY AUTOINCREMENT", 1))
    db.execute(f"INSERT INTO runs_ids ({columns}) SELECT {columns} FROM runs")
    db.execute("DROP TABLE runs")
    db.execute("ALTER TABLE runs_ids RENAME TO runs")
    db.execute("DELETE FROM sqlite_sequence WHERE name = 'runs'")
    db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('runs', ?)", (highest,))
    for table in ("cells", "parts"):
        db.execute(f"DELETE FROM {table} WHERE run_id NOT IN (SELECT id FROM runs)")


class AskedCells:
    """A store seen through one command's request: the cells of run ``run_id`` it asked for,
    so a command's own output covers what it asked, while other cells of the same identity stay
    in the store (and in ``table``)."""

    def __init__(self, store: ResultStore, run_id: int, asked: Iterable[tuple[str, str]]) -> None:
        self.store, self.run_id, self.asked = store, run_id, {tuple(key) for key in asked}

    def cells(self, run: Run) -> dict[tuple[str, str], Cell]:
        found = self.store.cells(run)
        return found if run.id != self.run_id else {k: c for k, c in found.items() if k in self.asked}

    def __getattr__(self, name: str):
        return getattr(self.store, name)


def write_json(path: str | Path, summary: Mapping) -> None:
    """Write a summary atomically, keys in a fixed order, so reruns give identical bytes."""
    atomic_write_text(path, json.dumps(summary, indent=2) + "\n")
