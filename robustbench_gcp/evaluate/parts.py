"""Cells stored in parts: each (cell, chunk) is written as soon as it is counted, and a cell
becomes one stored cell once its parts cover every sample. What the chunked evaluations share;
each supplies how its parts merge into a cell."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ..results import Cell, CellPart, ResultsError, ResultStore, Run
from ..summaries import unpack_flags
from .common import EvaluationError

Merge = Callable[[str, str, list[CellPart], int], Cell | None]
Key = tuple[str, str]
Shard = tuple[int, int]  # (k, n): the k-th of n contiguous blocks of a run's positions


def part_fits(part: CellPart, size: int) -> bool:
    """A stored part's coverage and outcomes have the length ``size`` images need: one bit each
    (corruption flags), or three int32 counts each (perturbation videos)."""
    flags = -(-size // 8)
    return len(part.covered) == flags and len(part.mask) in (flags, 12 * size)


def check_shard(shard: Shard | None) -> None:
    if shard is not None and not (len(shard) == 2 and 0 <= shard[0] < shard[1]):
        raise EvaluationError(f"shard {shard!r}: pass (k, n) with 0 <= k < n")


def shard_mask(size: int, shard: Shard | None) -> np.ndarray:
    """The positions of one shard: the k-th of n contiguous, near-equal blocks (all without a shard)."""
    mask = np.zeros(size, dtype=bool)
    k, n = shard or (0, 1)
    mask[k * size // n : (k + 1) * size // n] = True
    return mask


def within_shard(todo: dict[Key, np.ndarray], size: int, shard: Shard | None) -> dict[Key, np.ndarray]:
    """The pending samples of each cell that lie in the shard; cells with none left are dropped.
    A sharded run stores parts only: its cells become whole when the shards' stores are merged."""
    if shard is None:
        return todo
    mask = shard_mask(size, shard)
    return {cell: missing & mask for cell, missing in todo.items() if (missing & mask).any()}


def coverage(parts: list[CellPart], size: int) -> np.ndarray:
    """Positions the stored parts of a cell have evaluated."""
    if not parts:
        return np.zeros(size, dtype=bool)
    return np.logical_or.reduce([unpack_flags(part.covered)[:size] for part in parts])


def finish_cell(store: ResultStore, run: Run, cell: Key, parts: list[CellPart], size: int, merge: Merge) -> bool:
    """Store a cell whose parts cover every sample (True); overlapping parts that cannot make one
    whole cell are dropped instead (False), with a warning, so that the cell is evaluated again."""
    merged = merge(*cell, parts, size)
    if merged is not None:
        store.add_cell(run, merged)
        return True
    store.delete_parts(run, *cell)
    warnings.warn(f"cell {cell[0]} {cell[1]} of run {run.id} was evaluated twice over overlapping chunks (two "
                  "processes on one run?); its parts were dropped: rerun the command to evaluate it again",
                  stacklevel=3)
    return False


def pending(store: ResultStore, run: Run, wanted: Sequence[Key], size: int | Mapping[Key, int],
            merge: Merge) -> tuple[dict[Key, np.ndarray], dict[Key, list[CellPart]]]:
    """The samples each wanted cell still lacks, and the stored parts of the unfinished cells.
    Cells whose parts already cover every sample (a run stopped between a cell's last part and
    the cell itself) are finished here. ``size``: the samples of every cell, or of each wanted
    cell where a run's cells cover different sets (a shifted set and its clean set)."""
    size_of = size.get if isinstance(size, Mapping) else lambda cell: size
    done, stored = set(store.cells(run)), store.parts(run)
    for cell, parts in stored.items():
        expected = size_of(cell)
        if expected is not None and any(not part_fits(part, expected) for part in parts):
            raise ResultsError(f"{store.path}: run {run.id} has a stored part of cell {cell[0]} {cell[1]} whose "
                               f"outcomes do not fit its {expected} images (a damaged database); delete the run "
                               f"with gcp-robust runs --db {store.path} --delete {run.id} and evaluate it again")
    todo = {cell: ~coverage(stored.get(cell, []), size_of(cell)) for cell in wanted if cell not in done}
    for cell in [cell for cell, missing in todo.items() if not missing.any()]:
        if finish_cell(store, run, cell, stored.pop(cell), size_of(cell), merge):
            del todo[cell]
        else:
            todo[cell] = np.ones(size_of(cell), dtype=bool)
    return todo, stored


def add_part(store: ResultStore, run: Run, part: CellPart, stored: dict[Key, list[CellPart]], size: int,
             merge: Merge) -> None:
    """Store a counted part, and its cell once the parts cover every sample."""
    cell = (part.name, part.level)
    store.add_part(run, part)
    stored.setdefault(cell, []).append(part)
    if coverage(stored[cell], size).all():
        finish_cell(store, run, cell, stored.pop(cell), size, merge)
