"""Run summaries (the ``--json`` output) from stored cells, and the comparison of two summaries.

Summaries are percentages computed at the end from the stored counts; the comparison refuses
summaries it cannot compare faithfully (different kinds, missing metrics, NaN, wrong types)
instead of reporting "no regression".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .attacks import ATTACKS, parse_epsilons
from .corruptions import names
from .errors import Error
from .metrics import mce, mean_error, relative_mce
from .results import Cell, Run
from .statistics import DEFAULT_CONFIDENCE, bootstrap_interval, proportion_interval

CLEAN = ("clean", "0")


class ComparisonError(Error, ValueError):
    """Two summaries that cannot be compared, with the reason."""


def pack_flags(flags: np.ndarray) -> bytes:
    """Per-sample booleans as packed bits (the padding bits are 0)."""
    return np.packbits(flags.astype(bool)).tobytes()


def unpack_flags(mask: bytes) -> np.ndarray:
    """Flags back from ``pack_flags``; the padding bits are 0, so they never count as robust."""
    return np.unpackbits(np.frombuffer(mask, dtype=np.uint8)).astype(bool)


def _skipped(run: Run, cells: Mapping[tuple[str, str], Cell]) -> int:
    """Unreadable images met by a run, each counted once: cells that read the same files (the
    clean images corrupted on the fly, or attacked) count them once; released files per cell add up."""
    counts = [c.skipped for c in cells.values()]
    if not counts:
        return 0
    return sum(counts) if run.kind == "corruption" and run.config.get("source") != "generated" else max(counts)


def is_imagenet_run(run: Run) -> bool:
    """A run on ImageNet-sized data (224 px, 1000 classes): the only data that AlexNet-normalised
    metrics (CE, mCE, relative mCE) mean something on. Runs stored without these facts count as one."""
    return run.config.get("input_size", 224) >= 224 and run.config.get("model_classes", 1000) == 1000


def _percent_interval(successes: int, n: int, confidence: float) -> list[float] | None:
    if not n:
        return None
    low, high = proportion_interval(successes, n, confidence)
    return [round(100 * low, 4), round(100 * high, 4)]


def _error_outcomes(cells: Mapping[tuple[str, str], Cell], keys: list[tuple[str, str]]) -> np.ndarray | None:
    """Per-image errors (cells × images) of ``keys`` from their masks, where every cell has one over
    the same images and none skipped an unreadable image (unread images are in no mask)."""
    chosen = [cells[k] for k in keys]
    sizes = {c.n for c in chosen}
    if not chosen or any(c.mask is None or c.skipped for c in chosen) or len(sizes) != 1:
        return None
    size = sizes.pop()
    return np.stack([~unpack_flags(c.mask)[:size] for c in chosen])


def _corruption_intervals(run: Run, cells: Mapping[tuple[str, str], Cell], errors: dict, confidence: float) -> dict:
    """Wilson intervals per cell; paired bootstrap intervals of the aggregates (null where the
    cells lack per-image outcomes: databases written before they were stored, or unread images)."""
    per_cell = {name: [_percent_interval(cells[name, str(s)].top1_errors, cells[name, str(s)].n, confidence)
                       if (name, str(s)) in cells else None for s in range(1, 6)] for name in errors}
    clean = cells.get(CLEAN)
    keys = [k for k in cells if k[0] in errors] + ([CLEAN] if clean else [])
    outcomes = _error_outcomes(cells, keys)
    aggregates = {"mCE_ci": None, "relative_mCE_ci": None, "mean_error_ci": None}
    if outcomes is not None:
        def table(rates: np.ndarray) -> dict:
            by_key = dict(zip(keys, rates))
            return {n: [by_key.get((n, str(s))) for s in range(1, 6)] for n in errors}

        def interval(statistic) -> list[float]:
            low, high = bootstrap_interval(outcomes, statistic, confidence)
            return [round(low, 4), round(high, 4)]

        if any(n in errors for n in names("common")):
            aggregates["mean_error_ci"] = interval(lambda rates: mean_error(table(rates)))
        complete = is_imagenet_run(run) and all(
            n in errors and all((n, str(s)) in cells for s in range(1, 6)) for n in names("common"))
        if complete:
            aggregates["mCE_ci"] = interval(lambda rates: mce(table(rates)))
            if clean:
                aggregates["relative_mCE_ci"] = interval(
                    lambda rates: relative_mce(table(rates), dict(zip(keys, rates))[CLEAN]))
    return {"clean_error_ci": _percent_interval(clean.top1_errors, clean.n, confidence) if clean else None,
            "errors_ci": per_cell, **aggregates}


def summarize_corruptions(run: Run, cells: Mapping[tuple[str, str], Cell], corruptions: Sequence[str],
                          confidence: float | None = DEFAULT_CONFIDENCE) -> dict:
    """The JSON summary of a corruption run (percent; mCE fields null unless all 15×5 ran on
    ImageNet-sized data), with ``<metric>_ci`` intervals at ``confidence`` (None: none)."""
    def rate(cell: Cell | None) -> float | None:
        return round(100 * cell.top1_error, 4) if cell and cell.n else None

    clean = cells.get(CLEAN)
    errors = {
        name: [rate(cells.get((name, str(s)))) for s in range(1, 6)]
        for name in names("all") if name in corruptions or any(k[0] == name for k in cells)
    }
    fractions = {n: [None if e is None else e / 100 for e in v] for n, v in errors.items()}
    complete = is_imagenet_run(run) and all(n in errors and None not in errors[n] for n in names("common"))
    clean_error = rate(clean)
    ran = [n for n in names("common") if n in errors and any(e is not None for e in errors[n])]
    any_cell = next((c for c in cells.values()), None)
    return {
        "model": run.model,
        "checkpoint_sha256": run.config.get("checkpoint_sha256"),
        "dataset": run.config.get("dataset"),
        "protocol": run.config.get("protocol") or run.config.get("source"),
        "n": clean.n if clean else (any_cell.n if any_cell else 0),
        "clean_error": clean_error,
        "errors": errors,
        "mCE": round(mce(fractions), 4) if complete else None,
        "relative_mCE": round(relative_mce(fractions, clean_error / 100), 4) if complete and clean_error is not None
        else None,
        "mean_error": round(mean_error(fractions), 4) if ran else None,
        "skipped_unreadable": _skipped(run, cells),
        **(_corruption_intervals(run, cells, errors, confidence) if confidence else {}),
    }


def summarize_attacks(run: Run, cells: Mapping[tuple[str, str], Cell],
                      confidence: float | None = DEFAULT_CONFIDENCE) -> dict:
    """The JSON summary of an attack run (percent; eps keys as given), with Wilson intervals
    (``<metric>_ci``) at ``confidence`` (None: none); the worst case is a proportion too."""
    clean = cells.get(CLEAN)
    n = clean.n if clean else 0
    attacks = [a for a in ATTACKS if any(name == a for name, _ in cells)]
    levels = sorted({level for name, level in cells if name != "clean"}, key=lambda t: parse_epsilons(t)[0][1])

    def accuracy(cell: Cell) -> float | None:
        return round(100 * (1 - cell.top1_errors / cell.n), 4) if cell.n else None

    robust = {a: {lv: accuracy(cells[a, lv]) for lv in levels if (a, lv) in cells} for a in attacks}
    worst, worst_robust = {}, {}
    for level in levels:
        masks = [unpack_flags(cells[a, level].mask) for a in attacks if (a, level) in cells]
        if masks and n:
            worst_robust[level] = int(np.logical_and.reduce(masks).sum())
            worst[level] = round(100 * worst_robust[level] / n, 4)
    intervals = {}
    if confidence:
        def correct(cell: Cell) -> list[float] | None:
            return _percent_interval(cell.n - cell.top1_errors, cell.n, confidence)

        intervals = {
            "clean_accuracy_ci": correct(clean) if clean else None,
            "robust_accuracy_ci": {a: {lv: correct(cells[a, lv]) for lv in by_eps} for a, by_eps in robust.items()},
            "worst_case_ci": {lv: _percent_interval(k, n, confidence) for lv, k in worst_robust.items()},
        }
    return {
        "model": run.model,
        "checkpoint_sha256": run.config.get("checkpoint_sha256"),
        "dataset": run.config.get("dataset"),
        "n": n,
        "clean_accuracy": accuracy(clean) if clean else None,
        "robust_accuracy": robust,
        "worst_case": worst,
        "skipped_unreadable": _skipped(run, cells),
        **intervals,
    }


# --------------------------------------------------------------------------- comparison

@dataclass(frozen=True)
class Difference:
    metric: str
    baseline: float | None
    current: float | None
    worse_by: float | None  # positive: the current run is worse (percentage points)


def summary_kind(summary: object, label: str) -> str:
    """'corruption' or 'attack', or a ComparisonError saying what ``label`` holds instead."""
    if not isinstance(summary, Mapping):
        raise ComparisonError(f"{label} holds a JSON {type(summary).__name__}, not a run summary object; "
                              "pass files written with --json")
    if "errors" in summary:
        return "corruption"
    if "robust_accuracy" in summary:
        return "attack"
    raise ComparisonError(f"{label} is not a run summary: it has neither 'errors' (eval-corruption) nor "
                          "'robust_accuracy' (eval-attack)")


def _number(value: object, label: str, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ComparisonError(f"{label}: {key} is {value!r}, not a number")
    if math.isnan(value):
        raise ComparisonError(f"{label}: {key} is NaN; the run that wrote it is broken, rerun it")
    return float(value)


def _mapping(value: object, label: str, key: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise ComparisonError(f"{label}: {key} is a {type(value).__name__}, expected an object")
    return value


def _metrics(summary: Mapping, label: str) -> dict[str, tuple[float | None, int]]:
    """Every comparable number of a summary, in report order, with its direction (+1: higher is worse)."""
    found: dict[str, tuple[float | None, int]] = {}
    for key in ("clean_error", "mCE", "relative_mCE", "mean_error"):
        if key in summary:
            found[key] = (_number(summary[key], label, key), +1)
    for name, rates in _mapping(summary.get("errors", {}), label, "errors").items():
        if not isinstance(rates, list):
            raise ComparisonError(f"{label}: errors.{name} is not a list of five error rates")
        for severity, rate in enumerate(rates, start=1):
            found[f"{name}/{severity}"] = (_number(rate, label, f"errors.{name}[{severity - 1}]"), +1)
    if "clean_accuracy" in summary:
        found["clean_accuracy"] = (_number(summary["clean_accuracy"], label, "clean_accuracy"), -1)
    for attack, by_eps in _mapping(summary.get("robust_accuracy", {}), label, "robust_accuracy").items():
        for eps, accuracy in _mapping(by_eps, label, f"robust_accuracy.{attack}").items():
            found[f"{attack}@{eps}"] = (_number(accuracy, label, f"robust_accuracy.{attack}.{eps}"), -1)
    for eps, accuracy in _mapping(summary.get("worst_case", {}), label, "worst_case").items():
        found[f"worst_case@{eps}"] = (_number(accuracy, label, f"worst_case.{eps}"), -1)
    return found


def compare(baseline: object, current: object, labels: tuple[str, str] = ("baseline", "current")) -> list[Difference]:
    """Metric-by-metric differences of two run summaries (errors: up is worse; accuracies: down).

    Refuses summaries of different kinds, and a current summary that lacks a metric the
    baseline has: a regression gate must not pass because a number went missing.
    """
    kinds = summary_kind(baseline, labels[0]), summary_kind(current, labels[1])
    if kinds[0] != kinds[1]:
        raise ComparisonError(f"{labels[0]} is an {kinds[0]} summary but {labels[1]} is an {kinds[1]} summary; "
                              "compare runs of the same command")
    before, after = _metrics(baseline, labels[0]), _metrics(current, labels[1])
    missing = [m for m, (value, _) in before.items() if value is not None and after.get(m, (None,))[0] is None]
    if missing:
        raise ComparisonError(f"{labels[1]} lacks {len(missing)} metric(s) that {labels[0]} has "
                              f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); run the same cells")
    rows = []
    for metric in [*before, *(m for m in after if m not in before)]:
        old, direction = before.get(metric, (None, +1))
        new, direction = after.get(metric, (None, direction))
        if old is None and new is None:  # a cell neither run has (a severity not run, mCE of a partial run)
            continue
        worse = direction * (new - old) if old is not None and new is not None else None
        rows.append(Difference(metric, old, new, worse))
    return rows
