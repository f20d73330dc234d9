"""Tables of natural-shift runs: one block per shifted set, a row per run (GAP next to GCP, and with
``--pairs`` a row of their differences), each error with its interval, and each run's effective
robustness against the trend of the models in the store (or a given one)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..comparison import DEFAULT_ALPHA
from ..data.shifts import TITLES
from ..effective_robustness import EffectiveRobustness, Trend
from ..results import ResultStore, Run
from ..statistics import DEFAULT_CONFIDENCE
from ..summaries import summarize
from .runs import run_labels
from .tables import NO_TWINS, _delta, _with_interval, render, twin_comparisons

HEADERS = ["run", "clean top-1 error (%)", "top-1 error (%)", "top-5 error (%)", "effective robustness (points)"]


def _title(summary: dict) -> str:
    shift, classes = summary["shift"], summary["classes"]
    name = TITLES.get(summary["source"], shift) + (f" {summary['variant']}" if summary.get("variant") else "")
    if classes and classes < 1000:
        return (f"{name} ({shift}): scored over its {classes} classes; clean: the ImageNet validation images of "
                "those classes")
    return f"{name} ({shift}): 1000 classes; clean: the ImageNet validation set"


def _difference_row(comparison, gap: Run, gcp: Run, effective: EffectiveRobustness, alpha: float) -> list:
    """Δ GCP − GAP of each column, * where significant at ``alpha`` (McNemar, Holm-corrected, for
    the top-1 errors; the paired bootstrap for effective robustness; none for top-5)."""
    differences = comparison.by_metric()
    row = ["Δ GCP − GAP"]
    for metric in ("clean_error", "top1_error", "top5_error"):
        found = differences.get(metric)
        significant = found.significant if found and metric != "top5_error" else None
        row.append(_delta(found.change, significant) if found else None)
    paired = effective.difference(gap, gcp, 1 - alpha)
    if paired is None:
        row.append(None)
    else:
        value, interval = paired
        row.append(_delta(value, None if interval is None else not interval[0] <= 0 <= interval[1]))
    return row


def shift_tables(store: ResultStore, runs: Sequence[Run], fmt: str = "github",
                 confidence: float | None = DEFAULT_CONFIDENCE, pairs: bool = False, alpha: float = DEFAULT_ALPHA,
                 trends: Mapping[str, Trend] | None = None) -> str:
    """Top-1/top-5 error (%) on each shifted set and its clean set, and effective robustness
    (points), runs as rows, one block per shifted set; values with the bounds of their
    ``confidence`` interval. ``pairs``: a difference row after each GAP/GCP twin pair."""
    if not runs:
        return "no shift runs in the store"
    effective = EffectiveRobustness(store, trends)
    summaries = {r.id: summarize(r, store.cells(r), confidence) for r in runs}
    labels = dict(zip((r.id for r in runs), run_labels(runs)))
    shifts = list(dict.fromkeys(summaries[r.id]["shift"] for r in runs))
    text, compared = [], False
    for shift in shifts:
        block = [r for r in runs if summaries[r.id]["shift"] == shift]
        rows, notes = [], []
        for run in block:
            s, estimate = summaries[run.id], effective.estimate(run, confidence)
            rows.append([labels[run.id], _with_interval(s["clean_error"], s.get("clean_error_ci"), fmt),
                         _with_interval(s["top1_error"], s.get("top1_error_ci"), fmt),
                         _with_interval(s["top5_error"], s.get("top5_error_ci"), fmt),
                         _with_interval(estimate.value, estimate.interval, fmt)])
            notes.append(estimate.note)
        comparisons = twin_comparisons(store, block, alpha, [labels[r.id] for r in block]) if pairs else {}
        for index in sorted(comparisons, reverse=True):
            rows.insert(index + 1, _difference_row(comparisons[index], block[index - 1], block[index], effective,
                                                   alpha))
        compared = compared or bool(comparisons)
        trend = "; ".join(note for note in dict.fromkeys(notes) if note)
        text.append(f"{_title(summaries[block[0].id])}\n" + render(rows, HEADERS, fmt)
                    + (f"\n\neffective robustness: top-1 accuracy minus the trend's prediction from the clean "
                       f"accuracy (Taori et al. 2020); {trend}" if trend else ""))
    if compared:
        text.append(f"Δ GCP − GAP: * significant at alpha {alpha:g} (paired over the same images: McNemar's exact "
                    "test, Holm-corrected over the clean and the shifted set, for the top-1 errors; the paired "
                    "bootstrap for effective robustness)")
    elif pairs:
        text.append(NO_TWINS)
    return "\n\n".join(text)

