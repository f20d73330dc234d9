"""Two runs compared metric by metric, with the uncertainty of every difference.

Stored runs over the same images are compared pairwise: McNemar's exact test per cell on the
images whose outcome changed, Holm-corrected over the cells, and a paired bootstrap interval of
the difference for each aggregate (mean error, mCE, relative mCE). JSON summaries carry no
per-image outcomes: their differences get unpaired intervals, the two summaries' own intervals
combined in quadrature, and the output says so. Summaries that cannot be compared faithfully
(different kinds, missing metrics, NaN, wrong types) are refused rather than passed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from .errors import Error, a_kind
from .metrics import mce, mean_error, relative_mce
from .results import Cell, ResultStore, Run
from .stability import counts_from_bytes
from .statistics import bootstrap_interval, bootstrap_intervals, holm, mcnemar_exact
from .summaries import CLEAN, perturbations_of_test_set, summarize, unpack_flags

DEFAULT_ALPHA = 0.05


class ComparisonError(Error, ValueError):
    """Two summaries that cannot be compared, with the reason."""


def check_gate(max_increase: float, alpha: float) -> None:
    """The regression gate's settings: a NaN or negative threshold would pass every regression
    (NaN compares false) or fail identical runs, so both are refused."""
    if not (math.isfinite(max_increase) and max_increase >= 0):
        raise ComparisonError(f"--max-increase {max_increase:g}: pass a finite number of percentage points ≥ 0, "
                              "e.g. 1.0")
    check_alpha(alpha)


def check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:  # NaN fails too
        raise ComparisonError(f"--alpha {alpha:g}: pass a significance level between 0 and 1, e.g. 0.05")


@dataclass(frozen=True)
class Difference:
    metric: str
    baseline: float | None
    current: float | None
    worse_by: float | None  # positive: the current run is worse (percentage points)
    interval: tuple[float, float] | None = None  # of worse_by
    p_value: float | None = None  # McNemar, Holm-adjusted over the cells (paired runs)
    significant: bool | None = None  # None: no uncertainty known
    direction: int = 1  # +1: a higher value is worse (errors); -1: a higher value is better (accuracies)

    @property
    def change(self) -> float | None:
        """current − baseline in the metric's own sense (``worse_by`` with the metric's direction undone)."""
        return None if self.worse_by is None else round(self.direction * self.worse_by, 4)

    @property
    def change_interval(self) -> tuple[float, float] | None:
        """The interval of ``change``."""
        return None if self.interval is None else tuple(sorted(self.direction * bound for bound in self.interval))


@dataclass(frozen=True)
class Comparison:
    differences: list[Difference]
    paired: bool
    note: str  # how the uncertainty was obtained
    corruption_intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # paired: mean over severities

    def by_metric(self) -> dict[str, Difference]:
        return {d.metric: d for d in self.differences}

    def regressions(self, max_increase: float, significant_only: bool) -> list[Difference]:
        """Metrics worse by more than ``max_increase`` points (and significant, if asked)."""
        check_gate(max_increase, DEFAULT_ALPHA)
        return [d for d in self.differences if d.worse_by is not None and d.worse_by > max_increase
                and (not significant_only or d.significant)]


def summary_kind(summary: object, label: str) -> str:
    """'corruption' or 'attack', or a ComparisonError saying what ``label`` holds instead."""
    if not isinstance(summary, Mapping):
        raise ComparisonError(f"{label} holds a JSON {type(summary).__name__}, not a run summary object; "
                              "pass files written with --json")
    if "errors" in summary:
        return "corruption"
    if "robust_accuracy" in summary:
        return "attack"
    if "flip_probability" in summary:
        return "perturbation"
    if "shift" in summary and "top1_error" in summary:
        return "shift"
    raise ComparisonError(f"{label} is not a run summary: it has neither 'errors' (eval-corruption), "
                          "'robust_accuracy' (eval-attack), 'flip_probability' (eval-perturbation) nor "
                          "'top1_error' (eval-shift)")


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


def _half_width(interval: object) -> float | None:
    """Half the width of a summary's ``[low, high]``, or None where it has none."""
    if isinstance(interval, (list, tuple)) and len(interval) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in interval):
        return (interval[1] - interval[0]) / 2
    return None


# metric → (value, direction (+1: higher is worse), half-width of its interval, cell key)
Metrics = dict[str, tuple[float | None, int, float | None, tuple[str, str] | None]]


def _metrics(summary: Mapping, label: str) -> Metrics:
    """Every comparable number of a summary, in report order."""
    found: Metrics = {}
    for key in ("clean_error", "mCE", "relative_mCE", "mean_error"):
        if key in summary:
            found[key] = (_number(summary[key], label, key), +1, _half_width(summary.get(f"{key}_ci")),
                          CLEAN if key == "clean_error" else None)
    if "shift" in summary and "top1_error" in summary:  # the shifted set of a shift run
        found["top1_error"] = (_number(summary["top1_error"], label, "top1_error"), +1,
                               _half_width(summary.get("top1_error_ci")), (str(summary["shift"]), "0"))
        found["top5_error"] = (_number(summary.get("top5_error"), label, "top5_error"), +1,
                               _half_width(summary.get("top5_error_ci")), None)
        found["effective_robustness"] = (_number(summary.get("effective_robustness"), label, "effective_robustness"),
                                         -1, _half_width(summary.get("effective_robustness_ci")), None)
    intervals = summary.get("errors_ci") if isinstance(summary.get("errors_ci"), Mapping) else {}
    for name, rates in _mapping(summary.get("errors", {}), label, "errors").items():
        if not isinstance(rates, list):
            raise ComparisonError(f"{label}: errors.{name} is not a list of five error rates")
        widths = intervals.get(name) if isinstance(intervals.get(name), list) else [None] * len(rates)
        for severity, (rate, width) in enumerate(zip(rates, widths), start=1):
            found[f"{name}/{severity}"] = (_number(rate, label, f"errors.{name}[{severity - 1}]"), +1,
                                           _half_width(width), (name, str(severity)))
    if "clean_accuracy" in summary:
        found["clean_accuracy"] = (_number(summary["clean_accuracy"], label, "clean_accuracy"), -1,
                                   _half_width(summary.get("clean_accuracy_ci")), CLEAN)
    robust_ci = summary.get("robust_accuracy_ci") if isinstance(summary.get("robust_accuracy_ci"), Mapping) else {}
    for attack, by_eps in _mapping(summary.get("robust_accuracy", {}), label, "robust_accuracy").items():
        widths = robust_ci.get(attack) if isinstance(robust_ci.get(attack), Mapping) else {}
        for eps, accuracy in _mapping(by_eps, label, f"robust_accuracy.{attack}").items():
            found[f"{attack}@{eps}"] = (_number(accuracy, label, f"robust_accuracy.{attack}.{eps}"), -1,
                                        _half_width(widths.get(eps)), (attack, eps))
    for name, by_difficulty in _mapping(summary.get("flip_probability", {}), label, "flip_probability").items():
        if isinstance(by_difficulty, (int, float)) and not isinstance(by_difficulty, bool):
            raise ComparisonError(f"{label}: flip_probability.{name} is one number, FP summed over the difficulties "
                                  "as summaries before FP per difficulty had it; rerun eval-perturbation (it "
                                  "resumes from its database) to write the summary per difficulty")
        for difficulty, value in _mapping(by_difficulty, label, f"flip_probability.{name}").items():
            number = _number(value, label, f"flip_probability.{name}.{difficulty}")
            found[f"FP {name}/{difficulty}"] = (None if number is None else 100 * number, +1, None,
                                                (name, difficulty))
    if "flip_probability" in summary:
        means = summary.get("mean_flip_probability") or {}
        for difficulty, mean in _mapping(means, label, "mean_flip_probability").items():
            number = _number(mean, label, f"mean_flip_probability.{difficulty}")
            found[f"mean FP/{difficulty}"] = (None if number is None else 100 * number, +1, None, None)
        for key in ("mFR", "mT5D"):
            found[key] = (_number(summary.get(key), label, key), +1, None, None)
    worst_ci = summary.get("worst_case_ci") if isinstance(summary.get("worst_case_ci"), Mapping) else {}
    for eps, accuracy in _mapping(summary.get("worst_case", {}), label, "worst_case").items():
        found[f"worst_case@{eps}"] = (_number(accuracy, label, f"worst_case.{eps}"), -1,
                                      _half_width(worst_ci.get(eps)), ("worst case", eps))
    return found


def _paired_metrics(baseline: object, current: object, labels: tuple[str, str]) -> tuple[Metrics, Metrics]:
    kinds = summary_kind(baseline, labels[0]), summary_kind(current, labels[1])
    if kinds[0] != kinds[1]:
        raise ComparisonError(f"{labels[0]} is {a_kind(kinds[0])} summary but {labels[1]} is {a_kind(kinds[1])} "
                              "summary; compare runs of the same command")
    before, after = _metrics(baseline, labels[0]), _metrics(current, labels[1])
    missing = [m for m, (value, *_) in before.items() if value is not None and after.get(m, (None,))[0] is None]
    if missing:
        raise ComparisonError(f"{labels[1]} lacks {len(missing)} metric(s) that {labels[0]} has "
                              f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); run the same cells")
    return before, after


def _rows(before: Metrics, after: Metrics) -> list[tuple[str, float | None, float | None, int, tuple | None]]:
    rows = []
    for metric in [*before, *(m for m in after if m not in before)]:
        old, direction, _, key = before.get(metric, (None, +1, None, None))
        new, direction, _, key = after.get(metric, (None, direction, None, key))
        if old is not None or new is not None:  # a cell neither run has (a severity not run, mCE of a partial run)
            rows.append((metric, old, new, direction, key))
    return rows


def compare(baseline: object, current: object, labels: tuple[str, str] = ("baseline", "current")) -> Comparison:
    """Two run summaries, unpaired: each difference's interval combines the summaries' own
    intervals in quadrature (conservative where the images are in fact the same)."""
    before, after = _paired_metrics(baseline, current, labels)
    differences = []
    for metric, old, new, direction, _ in _rows(before, after):
        worse = direction * (new - old) if old is not None and new is not None else None
        widths = before.get(metric, (None,) * 4)[2], after.get(metric, (None,) * 4)[2]
        interval, significant = None, None
        if worse is not None and None not in widths:
            half = math.hypot(*widths)
            interval, significant = (round(worse - half, 4), round(worse + half, 4)), abs(worse) > half
        differences.append(Difference(metric, old, new, None if worse is None else round(worse, 4), interval,
                                      None, significant, direction))
    known = any(d.interval for d in differences)
    note = ("unpaired: JSON summaries carry no per-image outcomes, so each interval combines the two summaries' "
            "own intervals" if known else "no intervals: the summaries carry none (written before they existed)")
    return Comparison(differences, paired=False, note=note)


def same_images(a: Run, b: Run) -> bool:
    """Whether two runs saw the same images in the same order (so they can be compared pairwise)."""
    return _subset(a) == _subset(b)


def _subset(run: Run) -> tuple:
    """What decides which images a run saw: the same tuple means the same images, in the same order."""
    config = run.config
    return (config.get("dataset"), config.get("dataset_size"), config.get("class_index_sha256"),
            config.get("source"), config.get("limit"), config.get("seed") if config.get("limit") else None,
            config.get("clean"))  # a shift run's clean set (other runs have none)


def _unpaired(store: ResultStore, runs: tuple[Run, Run], labels: tuple[str, str], alpha: float,
              reason: str) -> Comparison:
    """The unpaired comparison of two stored runs, saying why they could not be paired."""
    result = compare(*(summarize(run, store.cells(run), 1 - alpha) for run in runs), labels)
    return Comparison(result.differences, False, f"unpaired, {reason}: {result.note}")


def _hits(cells: Mapping[tuple[str, str], Cell], key: tuple[str, str], size: int) -> np.ndarray | None:
    """Per-image outcomes (correct, or robust) of a cell; the worst case is robust to every attack."""
    if key[0] == "worst case":
        masks = [c.mask for (name, level), c in cells.items() if level == key[1] and name != "clean"]
        return np.logical_and.reduce([unpack_flags(m)[:size] for m in masks]) if all(masks) and masks else None
    cell = cells.get(key)
    return unpack_flags(cell.mask)[:size] if cell is not None and cell.mask is not None else None


def _cell_sizes(cells: tuple[Mapping, Mapping], per_cell: bool) -> dict[tuple[str, str], int] | None:
    """The images behind each cell, the same in both runs and, unless ``per_cell`` (a shift run's
    shifted set and clean set), the same for every cell; None where they differ or nothing is stored."""
    sizes: dict[tuple[str, str], int] = {}
    for group in cells:
        for key, cell in group.items():
            if sizes.setdefault(key, cell.n) != cell.n:
                return None
    if not sizes or (not per_cell and len(set(sizes.values())) != 1):
        return None
    return sizes


def compare_runs(store: ResultStore, baseline: Run, current: Run, labels: tuple[str, str],
                 alpha: float = DEFAULT_ALPHA) -> Comparison:
    """Two stored runs; paired (McNemar per cell, Holm over cells; paired bootstrap for the
    aggregates) when they saw the same images and kept per-image outcomes, unpaired otherwise."""
    if baseline.kind == "perturbation":
        return _compare_perturbation_runs(store, (baseline, current), labels, alpha)
    cells = store.cells(baseline), store.cells(current)
    sizes = _cell_sizes(cells, per_cell=baseline.kind == "shift")
    skipped = any(c.skipped for group in cells for c in group.values())
    if not same_images(baseline, current):
        return _unpaired(store, (baseline, current), labels, alpha,
                         "the runs saw different images (dataset, class mapping, limit or subset seed differ)")
    if sizes is None or skipped:
        return _unpaired(store, (baseline, current), labels, alpha, "the runs skipped unreadable images")
    size = max(sizes.values())
    before, after = _paired_metrics(summarize(baseline, cells[0], None), summarize(current, cells[1], None), labels)
    rows = _rows(before, after)
    tests = {}
    for metric, _, _, _, key in rows:
        hits = tuple(_hits(group, key, sizes.get(key, size)) for group in cells) if key else (None, None)
        if hits[0] is not None and hits[1] is not None:
            tests[metric] = mcnemar_exact(int((hits[0] & ~hits[1]).sum()), int((~hits[0] & hits[1]).sum()))
    if not tests and any(key for *_, key in rows):
        return _unpaired(store, (baseline, current), labels, alpha,
                         "no per-image outcomes stored (an older database)")
    adjusted = dict(zip(tests, holm(list(tests.values()))))
    aggregates = _aggregate_intervals(cells, size, alpha) if baseline.kind == "corruption" else {}
    differences = []
    for metric, old, new, direction, _ in rows:
        worse = direction * (new - old) if old is not None and new is not None else None
        p_value, interval = adjusted.get(metric), aggregates.get(metric)
        significant = (p_value < alpha) if p_value is not None else (
            not interval[0] <= 0 <= interval[1] if interval else None)
        differences.append(Difference(metric, old, new, None if worse is None else round(worse, 4), interval,
                                      p_value, significant, direction))
    corruptions = {k: v for k, v in aggregates.items() if k not in ("mean_error", "mCE", "relative_mCE")}
    images = f"{size} images" if len(set(sizes.values())) == 1 else " and ".join(
        f"{n} images ({name})" for (name, _), n in sizes.items())
    return Comparison(differences, True, f"paired over the same {images}: McNemar's exact test per cell "
                      f"(Holm-corrected over {len(tests)} cells), paired bootstrap for the aggregates; alpha {alpha:g}",
                      corruptions)


def _aggregate_intervals(cells: tuple[Mapping, Mapping], size: int, alpha: float) -> dict:
    """Paired bootstrap intervals of current − baseline for mean error, mCE and relative mCE."""
    keys = sorted(set(cells[0]) & set(cells[1]))
    if any(cells[i][k].mask is None for i in (0, 1) for k in keys):
        return {}
    outcomes = np.stack([~unpack_flags(cells[i][k].mask)[:size] for i in (0, 1) for k in keys])
    corruption_keys = [k for k in keys if k != CLEAN]

    def table(rates: np.ndarray) -> dict:
        by_key = dict(zip(keys, rates))
        return {name: [by_key.get((name, str(s))) for s in range(1, 6)] for name, _ in corruption_keys}

    def difference(aggregate: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
        return lambda rates: aggregate(rates[len(keys):]) - aggregate(rates[: len(keys)])

    found = {}
    statistics = {"mean_error": lambda rates: mean_error(table(rates))}
    for name in dict.fromkeys(n for n, _ in corruption_keys):  # each corruption's mean over its severities
        rows = [i for i, k in enumerate(keys) if k[0] == name]
        statistics[name] = lambda rates, rows=rows: 100 * rates[rows].mean(axis=0)
    complete = all((n, str(s)) in keys for n, _ in corruption_keys for s in range(1, 6))
    if complete and len({n for n, _ in corruption_keys}) >= 15:
        statistics["mCE"] = lambda rates: mce(table(rates))
        if CLEAN in keys:
            statistics["relative_mCE"] = lambda rates: relative_mce(table(rates), dict(zip(keys, rates))[CLEAN])
    observed = outcomes.mean(axis=1, dtype=np.float32)[:, None]
    for metric, statistic in list(statistics.items()):
        try:
            difference(statistic)(observed)
        except ValueError:  # not computable for these cells (e.g. mCE of a non-ImageNet run)
            del statistics[metric]
    if not statistics:
        return found
    intervals = bootstrap_intervals(outcomes, [difference(s) for s in statistics.values()], confidence=1 - alpha)
    for metric, (low, high) in zip(statistics, intervals):
        found[metric] = (round(low, 4), round(high, 4))
    return found


def _video_shares(cells: Mapping[tuple[str, str], Cell], key: tuple[str, str]) -> np.ndarray | None:
    """Per-video flip share of a (perturbation, difficulty) cell (FP is their mean)."""
    cell = cells.get(key)
    if cell is None or not cell.mask:
        return None
    counts = counts_from_bytes(cell.mask)
    return counts[:, 0] / counts[:, 2]


def _compare_perturbation_runs(store: ResultStore, runs: tuple[Run, Run], labels: tuple[str, str],
                               alpha: float) -> Comparison:
    """Two stored perturbation runs: over the same videos, a paired bootstrap interval of each
    difference in flip probability (per perturbation and their mean); unpaired otherwise."""
    if not same_images(*runs):
        return _unpaired(store, runs, labels, alpha, "the runs saw different videos (dataset, limit or seed differ)")
    cells = store.cells(runs[0]), store.cells(runs[1])
    before, after = _paired_metrics(*(summarize(r, c, None) for r, c in zip(runs, cells)), labels)
    shares, perturbation_of, difficulty_of = {}, {}, {}
    for metric, *_, key in _rows(before, after):
        if key is not None:
            pair = _video_shares(cells[0], key), _video_shares(cells[1], key)
            if pair[0] is not None and pair[1] is not None and len(pair[0]) == len(pair[1]):
                shares[metric], (perturbation_of[metric], difficulty_of[metric]) = pair, key
    tests = perturbations_of_test_set(runs[0])
    intervals = {metric: bootstrap_interval(np.stack(pair), lambda r: 100 * (r[1] - r[0]), 1 - alpha)
                 for metric, pair in shares.items()}
    for difficulty in dict.fromkeys(difficulty_of.values()):
        if f"mean FP/{difficulty}" not in before:
            continue
        pairs = [pair for metric, pair in shares.items()  # the test perturbations, as the mean FP shown
                 if difficulty_of[metric] == difficulty and perturbation_of[metric] in tests]
        rows, k = [pair[0] for pair in pairs] + [pair[1] for pair in pairs], len(pairs)
        intervals[f"mean FP/{difficulty}"] = bootstrap_interval(
            np.stack(rows), lambda r, k=k: 100 * (r[k:].mean(0) - r[:k].mean(0)), 1 - alpha)
    differences = []
    for metric, old, new, direction, _ in _rows(before, after):
        worse = direction * (new - old) if old is not None and new is not None else None
        interval = intervals.get(metric)
        interval = None if interval is None else (round(interval[0], 4), round(interval[1], 4))
        significant = None if interval is None else not interval[0] <= 0 <= interval[1]
        differences.append(Difference(metric, old, new, None if worse is None else round(worse, 4), interval,
                                      None, significant, direction))
    videos = len(next(iter(shares.values()))[0]) if shares else 0
    return Comparison(differences, True, f"paired over the same {videos} videos: bootstrap intervals of the "
                      f"flip-probability differences (percentage points); alpha {alpha:g}")
