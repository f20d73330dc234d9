"""Everything a report shows about stored runs, as one JSON-able record: the HTML report renders
it, and ``table --format json`` prints it, so the page and the JSON can never disagree.

Per run: its label, identity, provenance (the environments that computed its cells), summary with
intervals, and the published numbers of its checkpoint where it is a seed checkpoint. Per GAP/GCP
twin pair: the paired differences with their significance, as ``table --pairs`` computes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import datetime, timezone

from ..choices import C_BAR_PROTOCOLS
from ..comparison import DEFAULT_ALPHA, Comparison, Difference
from ..effective_robustness import EffectiveRobustness, Trend
from ..models.published import published_for
from ..results import ResultStore, Run
from ..statistics import DEFAULT_CONFIDENCE
from ..summaries import summarize, summarize_corruptions, summarize_perturbations
from ..version import __version__
from .runs import ReportError, run_labels
from .tables import twin_comparisons

KINDS = ("corruption", "attack", "perturbation", "shift")


def _summary(store: ResultStore, run: Run, confidence: float | None, baselines: Mapping[str, Run | None],
             effective: EffectiveRobustness) -> dict:
    baseline = baselines.get(run.kind)
    base_cells = store.cells(baseline) if baseline else None
    if run.kind == "perturbation":
        return summarize_perturbations(run, store.cells(run), (), (), baseline, base_cells)
    if run.kind == "corruption":  # a C-bar run's mCE is relative to its baseline run, as in `table`
        return summarize_corruptions(run, store.cells(run), [], confidence, baseline, base_cells)
    summary = summarize(run, store.cells(run), confidence)
    if run.kind == "shift":  # measured against the trend of the store's models (or a given one)
        estimate = effective.estimate(run, confidence)
        summary |= {"effective_robustness": estimate.value,
                    "effective_robustness_ci": list(estimate.interval) if estimate.interval else None,
                    "trend": estimate.note}
    return summary


# What each kind of run measures that the release published (a shift run's clean error is over
# the shifted set's classes only, so not the published top-1).
PUBLISHED_METRICS = {"corruption": ("clean_error", "mCE", "relative_mCE"), "attack": ("clean_accuracy",),
                     "perturbation": ("mFR", "mT5D"), "shift": ()}


def _published(kind: str, values: Mapping[str, float], summary: Mapping) -> dict:
    """The published values a run's summary has too, and ours − published for each."""
    metrics = PUBLISHED_METRICS[kind]
    if summary.get("protocol") in C_BAR_PROTOCOLS:  # its mCE is relative to a baseline run, not ImageNet-C's
        metrics = ("clean_error",)
    shown = {metric: value for metric, value in values.items() if metric in metrics and summary.get(metric) is not None}
    return {"values": shown, "differences": {metric: round(summary[metric] - value, 4)
                                             for metric, value in shown.items()}}


def _difference(d: Difference) -> dict:
    """GCP − GAP and its interval, whichever way the metric points."""
    interval = d.change_interval
    return {"metric": d.metric, "gap": d.baseline, "gcp": d.current, "difference": d.change,
            "interval": None if interval is None else list(interval), "p_value": d.p_value,
            "significant": d.significant}


def _comparison(comparison: Comparison, gap: Run, gcp: Run) -> dict:
    return {"gap": gap.id, "gcp": gcp.id, "paired": comparison.paired, "note": comparison.note,
            "differences": [_difference(d) for d in comparison.differences]}


def report_data(store: ResultStore, chosen: Mapping[str, Sequence[Run]], *,
                confidence: float | None = DEFAULT_CONFIDENCE, alpha: float = DEFAULT_ALPHA,
                baseline: Run | None = None, c_bar_baseline: Run | None = None,
                trends: Mapping[str, Trend] | None = None) -> dict:
    """The record of the ``chosen`` runs by kind (corruption, attack, perturbation, shift);
    ``baseline``: the perturbation run of mFR and mT5D; ``c_bar_baseline``: the corruption run of
    C-bar runs' mCE; ``trends``: given effective-robustness trends by shift (else fitted over the
    store)."""
    if not any(chosen.get(kind) for kind in KINDS):
        raise ReportError(f"no runs to report in {store.path}; `gcp-robust runs --db {store.path}` lists them")
    runs, pairs, effective = [], [], EffectiveRobustness(store, trends)
    for kind in KINDS:
        kind_runs = list(chosen.get(kind, ()))
        baselines = {"perturbation": baseline, "corruption": c_bar_baseline}
        summaries = [_summary(store, run, confidence, baselines, effective) for run in kind_runs]
        attacks = [list(s.get("robust_accuracy", ())) for s in summaries]
        labels = run_labels(kind_runs, attacks)
        for run, label, summary in zip(kind_runs, labels, summaries):
            published = published_for(run.model, run.config.get("checkpoint_sha256"))
            runs.append({
                "id": run.id, "kind": kind, "model": run.model, "label": label, "name": run.name,
                "created": run.created, "identity": run.config,
                "environments": [asdict(e) for e in store.environments(run)],
                "published": None if published is None else _published(kind, published.values(), summary) | {
                    "checkpoint": published.checkpoint, "source": published.source},
                "summary": summary,
            })
        if kind != "perturbation":
            for index, comparison in twin_comparisons(store, kind_runs, alpha, labels).items():
                pairs.append({"kind": kind, **_comparison(comparison, kind_runs[index - 1], kind_runs[index])})
    return {
        "store": str(store.path), "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "package": __version__, "confidence": confidence, "alpha": alpha,
        "baseline": None if baseline is None else {"id": baseline.id, "model": baseline.model},
        "c_bar_baseline": None if c_bar_baseline is None else {"id": c_bar_baseline.id, "model": c_bar_baseline.model},
        "runs": runs, "pairs": pairs,
    }
