"""Run summaries (the ``--json`` output) from stored cells: percentages computed at the end from
the stored counts, with their intervals."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .attacks import ATTACK_CELLS, attacks_by_norm, epsilon_value, mixed_norms
from .corruptions import C_BAR_PROTOCOLS, benchmark_names, known_names
from .metrics import mce, mean_error, relative_mce
from .results import Cell, ResultsError, Run
from .stability import (
    ORDER,
    TEST_PERTURBATIONS,
    counts_from_bytes,
    flip_probability,
    mean_rate,
    normalized_rates,
    top5_distance,
)
from .statistics import DEFAULT_CONFIDENCE, bootstrap_intervals, proportion_interval

CLEAN = ("clean", "0")


def pack_flags(flags: np.ndarray) -> bytes:
    """Per-sample booleans as packed bits (the padding bits are 0)."""
    return np.packbits(flags.astype(bool)).tobytes()


def unpack_flags(mask: bytes) -> np.ndarray:
    """Flags back from ``pack_flags``; the padding bits are 0, so they never count as robust."""
    return np.unpackbits(np.frombuffer(mask, dtype=np.uint8)).astype(bool)


class DamagedCellError(ResultsError):
    """A stored cell whose per-image outcomes do not fit its counts: the database was damaged."""


def _outcome_problem(run: Run, cell: Cell) -> str | None:
    """What is wrong with a stored cell's mask, if anything: perturbation cells keep per-video
    counts (3 × int32 per video, at least one frame pair each, no more flips than pairs), the
    others one bit per image of the subset (``n`` evaluated plus ``skipped`` unreadable)."""
    if cell.mask is None:  # databases written before masks were stored
        return None
    if run.kind != "perturbation":
        need = -(-(cell.n + cell.skipped) // 8)
        return None if len(cell.mask) == need else \
            f"a {len(cell.mask)}-byte outcome mask where its {cell.n + cell.skipped} images need {need} bytes"
    if len(cell.mask) != 12 * cell.n:
        return f"{len(cell.mask)} bytes of per-video counts where its {cell.n} videos need {12 * cell.n}"
    flips, distance, pairs = counts_from_bytes(cell.mask).T
    if (pairs < 1).any() or (flips < 0).any() or (flips > pairs).any() or (distance < 0).any() \
            or (distance > 15 * pairs).any():
        return "per-video counts no evaluation writes (a video without frame pairs, or more flips than pairs)"
    return None


def check_outcomes(run: Run, cells: Mapping[tuple[str, str], Cell]) -> None:
    """Refuse a run whose stored per-image outcomes do not fit its counts, before any of them
    turns into a number or a paired test."""
    for cell in cells.values():
        problem = _outcome_problem(run, cell)
        if problem:
            raise DamagedCellError(
                f"run {run.id}: its stored cell {cell.name}/{cell.level} has {problem}; the results database is "
                f"damaged: restore it from a copy, or delete the run with gcp-robust runs --delete {run.id} and "
                "evaluate it again")


def _skipped(run: Run, cells: Mapping[tuple[str, str], Cell]) -> int:
    """Unreadable images met by a run, each counted once: cells that read the same files (the
    clean images corrupted on the fly, or attacked) count them once; released files per cell add up
    (as do a shifted set and its clean set)."""
    counts = [c.skipped for c in cells.values()]
    if not counts:
        return 0
    own_files = run.kind == "shift" or (run.kind == "corruption" and run.config.get("source") != "generated")
    return sum(counts) if own_files else max(counts)


def is_imagenet_run(run: Run) -> bool:
    """A run on ImageNet-sized data (224 px, 1000 classes): the only data that AlexNet-normalised
    metrics (CE, mCE, relative mCE) mean something on. Runs stored without these facts count as one."""
    return run.config.get("input_size", 224) >= 224 and run.config.get("model_classes", 1000) == 1000


def is_c_bar_run(run: Run) -> bool:
    """A run of a C-bar protocol: its mCE is normalised by a stored baseline run, never by
    AlexNet's ImageNet-C errors."""
    return run.config.get("protocol") in C_BAR_PROTOCOLS


def _baseline_errors(run: Run, baseline_cells: Mapping[tuple[str, str], Cell] | None) -> tuple[dict | None,
                                                                                                float | None]:
    """A baseline run's error fractions over ``run``'s benchmark corruptions (None unless it has
    all five severities of each) and its clean error (None without a clean cell)."""
    if baseline_cells is None:
        return None, None
    found = {(name, level): cell.top1_error for (name, level), cell in baseline_cells.items() if cell.n}
    table = {n: [found.get((n, str(s))) for s in range(1, 6)] for n in benchmark_names(run.config.get("protocol"))}
    complete = all(None not in rates for rates in table.values())
    return (table if complete else None), found.get(CLEAN)


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


def _corruption_intervals(run: Run, cells: Mapping[tuple[str, str], Cell], errors: dict, confidence: float,
                          baseline: tuple[dict | None, float | None] = (None, None)) -> dict:
    """Wilson intervals per cell; paired bootstrap intervals of the aggregates (null where the
    cells lack per-image outcomes: databases written before they were stored, or unread images).
    A C-bar run's mCE is normalised by ``baseline`` (its errors and clean error, held fixed)."""
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

        statistics = {}  # bootstrapped together below: one set of resamples for all
        benchmark = benchmark_names(run.config.get("protocol"))
        if any(n in errors for n in benchmark):
            statistics["mean_error_ci"] = lambda rates: mean_error(table(rates), benchmark)
        c_bar = is_c_bar_run(run)
        normalise = {"baseline": baseline[0], "corruptions": benchmark} if c_bar else {}
        complete = (baseline[0] is not None if c_bar else is_imagenet_run(run)) and all(
            n in errors and all((n, str(s)) in cells for s in range(1, 6)) for n in benchmark)
        if complete:
            statistics["mCE_ci"] = lambda rates: mce(table(rates), **normalise)
            if clean and (not c_bar or baseline[1] is not None):
                statistics["relative_mCE_ci"] = lambda rates: relative_mce(
                    table(rates), dict(zip(keys, rates))[CLEAN], baseline_clean=baseline[1], **normalise)
        if statistics:
            for key, (low, high) in zip(statistics, bootstrap_intervals(outcomes, list(statistics.values()),
                                                                        confidence)):
                aggregates[key] = [round(low, 4), round(high, 4)]
    return {"clean_error_ci": _percent_interval(clean.top1_errors, clean.n, confidence) if clean else None,
            "errors_ci": per_cell, **aggregates}


def summarize_corruptions(run: Run, cells: Mapping[tuple[str, str], Cell], corruptions: Sequence[str],
                          confidence: float | None = DEFAULT_CONFIDENCE, baseline: Run | None = None,
                          baseline_cells: Mapping[tuple[str, str], Cell] | None = None) -> dict:
    """The JSON summary of a corruption run (percent; mCE fields null unless all 15×5 ran on
    ImageNet-sized data), with ``<metric>_ci`` intervals at ``confidence`` (None: none).

    A C-bar run's mean error is over its protocol's 10 corruptions; its mCE and relative mCE are
    normalised by a ``baseline`` run of the same protocol (baseline = 100; null without one, or
    unless both runs have all 10×5 cells), and it names the baseline under ``"baseline"``."""
    check_outcomes(run, cells)
    if baseline is not None and baseline_cells is not None:
        check_outcomes(baseline, baseline_cells)

    def rate(cell: Cell | None) -> float | None:
        return round(100 * cell.top1_error, 4) if cell and cell.n else None

    clean = cells.get(CLEAN)
    benchmark = benchmark_names(run.config.get("protocol"))
    errors = {  # the protocol's own order first: Hendrycks', or its C-bar generator's table
        name: [rate(cells.get((name, str(s)))) for s in range(1, 6)]
        for name in dict.fromkeys(benchmark + known_names()) if name in corruptions or any(k[0] == name for k in cells)
    }
    fractions = {n: [None if e is None else e / 100 for e in v] for n, v in errors.items()}
    c_bar = is_c_bar_run(run)
    normalisation = _baseline_errors(run, baseline_cells) if c_bar else (None, None)
    normalise = {"baseline": normalisation[0], "corruptions": benchmark} if c_bar else {}
    complete = (normalisation[0] is not None if c_bar else is_imagenet_run(run)) and all(
        n in errors and None not in errors[n] for n in benchmark)
    clean_error = rate(clean)
    relative = complete and clean_error is not None and (not c_bar or normalisation[1] is not None)
    ran = [n for n in benchmark if n in errors and any(e is not None for e in errors[n])]
    any_cell = next((c for c in cells.values()), None)
    named = {"baseline": None if baseline is None else {"run_id": baseline.id, "model": baseline.model,
                                                        "name": baseline.name}} if c_bar else {}
    relative_mce_value = relative_mce(fractions, clean_error / 100, baseline_clean=normalisation[1],
                                      **normalise) if relative else None
    return {
        "model": run.model,
        "checkpoint_sha256": run.config.get("checkpoint_sha256"),
        "dataset": run.config.get("dataset"),
        "protocol": run.config.get("protocol") or run.config.get("source"),
        "n": clean.n if clean else (any_cell.n if any_cell else 0),
        "clean_error": clean_error,
        "errors": errors,
        "mCE": round(mce(fractions, **normalise), 4) if complete else None,
        "relative_mCE": None if relative_mce_value is None else round(relative_mce_value, 4),
        "mean_error": round(mean_error(fractions, benchmark), 4) if ran else None,
        **named,
        "skipped_unreadable": _skipped(run, cells),
        **(_corruption_intervals(run, cells, errors, confidence, normalisation) if confidence else {}),
    }


def summarize_attacks(run: Run, cells: Mapping[tuple[str, str], Cell],
                      confidence: float | None = DEFAULT_CONFIDENCE) -> dict:
    """The JSON summary of an attack run (percent; eps keys as given), with Wilson intervals
    (``<metric>_ci``) at ``confidence`` (None: none); the worst case is a proportion too."""
    check_outcomes(run, cells)
    clean = cells.get(CLEAN)
    n = clean.n if clean else 0
    attacks = [a for a in ATTACK_CELLS if any(name == a for name, _ in cells)]
    levels = sorted({level for name, level in cells if name != "clean"}, key=epsilon_value)

    def accuracy(cell: Cell) -> float | None:
        return round(100 * (1 - cell.top1_errors / cell.n), 4) if cell.n else None

    robust = {a: {lv: accuracy(cells[a, lv]) for lv in levels if (a, lv) in cells} for a in attacks}
    worst, worst_robust = {}, {}
    grouped = attacks_by_norm(attacks, run.config.get("norm", "linf"))
    for level in levels if len(grouped) == 1 else ():  # no worst case across threat models
        masks = [cells[a, level].mask for a in attacks if (a, level) in cells]
        if masks and n and None not in masks:  # older databases kept no per-sample outcomes
            masks = [unpack_flags(mask) for mask in masks]
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
        **({"worst_case_refused": f"attacks of several norms ({mixed_norms(grouped)})"} if len(grouped) > 1 else {}),
        "skipped_unreadable": _skipped(run, cells),
        **intervals,
    }


def perturbation_values(cells: Mapping[tuple[str, str], Cell], perturbations: Sequence[str],
                        difficulties: Sequence[int]) -> tuple[dict, dict]:
    """Per perturbation and difficulty, FP and T5D from the stored per-video counts."""
    fp: dict[str, dict[int, float]] = {}
    t5d: dict[str, dict[int, float]] = {}
    for name in perturbations:
        for difficulty in difficulties:
            cell = cells.get((name, str(difficulty)))
            if cell is not None and cell.mask is not None and cell.n:
                counts = counts_from_bytes(cell.mask)
                fp.setdefault(name, {})[difficulty] = flip_probability(counts)
                t5d.setdefault(name, {})[difficulty] = top5_distance(counts)
    return fp, t5d


def summed_over_difficulties(values: Mapping[str, Mapping[int, float]],
                             difficulties: Sequence[int]) -> dict[str, float]:
    """Σ over ``difficulties`` per perturbation (the value itself for one difficulty), where all
    of them are there: not a probability once there are several."""
    return {name: sum(by[d] for d in difficulties) for name, by in values.items() if all(d in by for d in difficulties)}


def _by_difficulty(values: Mapping[str, Mapping[int, float]]) -> dict[str, dict[str, float]]:
    return {name: {str(d): round(v, 6) for d, v in sorted(by.items())} for name, by in values.items()}


def perturbations_of_test_set(run: Run) -> tuple[str, ...]:
    """The test perturbations of a perturbation run's protocol: what its mean FP averages."""
    return tuple(TEST_PERTURBATIONS.get(run.config.get("protocol"), TEST_PERTURBATIONS["imagenet-p"]))


def summarize_perturbations(run: Run, cells: Mapping[tuple[str, str], Cell], perturbations: Sequence[str] = (),
                            difficulties: Sequence[int] = (), baseline: Run | None = None,
                            baseline_cells: Mapping[tuple[str, str], Cell] | None = None) -> dict:
    """FP and T5D per perturbation and difficulty (``flip_probability[name]["1"]``), their sums
    over the difficulties (``*_summed``), the mean FP over the protocol's 10 test perturbations
    per difficulty, and with a baseline run FR, normalised T5D and their means mFR / mT5D over
    the test perturbations, in percent. The rates divide the sums over ``difficulties``
    (``rates_over_difficulties``): with difficulty 1 alone, ImageNet-P test.py's default, they
    are the published kind. Without ``difficulties``: those every stored perturbation has, so
    that all sums run over the same ones."""
    check_outcomes(run, cells)
    if baseline is not None and baseline_cells is not None:
        check_outcomes(baseline, baseline_cells)
    perturbations = list(perturbations) or [p for p in ORDER if any(name == p for name, _ in cells)]
    if not difficulties:
        stored = [{int(level) for name, level in cells if name == p} for p in perturbations]
        difficulties = set.intersection(*stored) if stored else set()
    difficulties = sorted(difficulties)
    tests = perturbations_of_test_set(run)
    fp, t5d = perturbation_values(cells, perturbations, difficulties)
    flip, distance = summed_over_difficulties(fp, difficulties), summed_over_difficulties(t5d, difficulties)
    mean_flip = {}
    for difficulty in difficulties:
        tested = [fp[p][difficulty] for p in tests if difficulty in fp.get(p, {})]
        if tested:
            mean_flip[str(difficulty)] = round(sum(tested) / len(tested), 6)
    summary = {
        "model": run.model, "name": run.name, "checkpoint_sha256": run.config.get("checkpoint_sha256"),
        "dataset": run.config.get("dataset"), "protocol": run.config.get("protocol"),
        "source": run.config.get("source"), "videos": max((c.n for c in cells.values()), default=0),
        "difficulties": difficulties,
        "flip_probability": _by_difficulty(fp),
        "top5_distance": _by_difficulty(t5d),
        "flip_probability_summed": {p: round(v, 6) for p, v in flip.items()},
        "top5_distance_summed": {p: round(v, 6) for p, v in distance.items()},
        "mean_flip_probability": mean_flip,  # per difficulty, over the test perturbations
        "rates_over_difficulties": None,
        "flip_rate": None, "top5_rate": None, "mFR": None, "mT5D": None, "baseline": None,
    }
    if baseline is not None and baseline_cells is not None:
        base_fp, base_t5d = perturbation_values(baseline_cells, perturbations, difficulties)
        flip_rate = normalized_rates(flip, summed_over_difficulties(base_fp, difficulties))
        top5_rate = normalized_rates(distance, summed_over_difficulties(base_t5d, difficulties))
        mfr, mt5d = mean_rate(flip_rate, tests), mean_rate(top5_rate, tests)
        summary.update({
            "rates_over_difficulties": difficulties,
            "flip_rate": {p: round(v, 4) for p, v in flip_rate.items()},
            "top5_rate": {p: round(v, 4) for p, v in top5_rate.items()},
            "mFR": None if mfr is None else round(mfr, 4), "mT5D": None if mt5d is None else round(mt5d, 4),
            "baseline": {"run_id": baseline.id, "model": baseline.model, "name": baseline.name},
        })
    return summary


def summarize_shift(run: Run, cells: Mapping[tuple[str, str], Cell],
                    confidence: float | None = DEFAULT_CONFIDENCE) -> dict:
    """The JSON summary of a natural-shift run: top-1 and top-5 error on the shifted set and, where
    the run has one, on its clean set (percent), each with Wilson's interval at ``confidence``."""
    check_outcomes(run, cells)
    config = run.config
    sets = {"": cells.get((config.get("shift"), "0")), "clean_": cells.get(CLEAN)}
    summary = {"model": run.model, "name": run.name, "checkpoint_sha256": config.get("checkpoint_sha256"),
               "shift": config.get("shift"), "source": config.get("source"), "variant": config.get("variant"),
               "classes": config.get("classes"), "dataset": config.get("dataset"),
               "clean_data": (config.get("clean") or {}).get("dataset")}
    for prefix, cell in sets.items():
        n = cell.n if cell else 0
        summary[f"{prefix}n"] = n
        for metric, errors in (("error" if prefix else "top1_error", cell.top1_errors if cell else 0),
                               ("top5_error", cell.top5_errors if cell else 0)):
            summary[f"{prefix}{metric}"] = round(100 * errors / n, 4) if n else None
            if confidence:
                summary[f"{prefix}{metric}_ci"] = _percent_interval(errors, n, confidence)
    summary["skipped_unreadable"] = _skipped(run, cells)
    return summary


def summarize(run: Run, cells: Mapping[tuple[str, str], Cell], confidence: float | None = DEFAULT_CONFIDENCE) -> dict:
    """The summary of a stored run of any kind."""
    if run.kind == "corruption":
        return summarize_corruptions(run, cells, [], confidence)
    if run.kind == "shift":
        return summarize_shift(run, cells, confidence)
    if run.kind == "perturbation":
        return summarize_perturbations(run, cells)
    return summarize_attacks(run, cells, confidence)
