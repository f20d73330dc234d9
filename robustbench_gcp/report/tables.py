"""Tables of the zoo and of stored runs: tabulate's formats, or one tidy CSV table."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from fractions import Fraction

from tabulate import tabulate

from ..attacks import epsilon_value
from ..comparison import DEFAULT_ALPHA, Comparison, compare_runs, same_images
from ..corruptions import benchmark_names, known_names, names
from ..effective_robustness import EffectiveRobustness, Trend
from ..metrics import corruption_error
from ..models.catalog import CatalogEntry
from ..models.published import Published, published_for
from ..results import ResultStore, Run
from ..stability import ORDER
from ..statistics import DEFAULT_CONFIDENCE
from ..summaries import is_c_bar_run, is_imagenet_run, summarize, summarize_corruptions, summarize_perturbations
from .runs import column_order, imagenet_metrics, run_label, run_labels, twins

TABLE_FORMATS = ("github", "latex", "plain", "csv")
NO_TWINS = ("--pairs: no GAP/GCP twins among these runs (a twin: the same backbone with the other head, evaluated "
            "on the same images), so no differences are shown")


def _millions(count: int) -> str:
    return f"{count / 1e6:.2f}M"


def catalog_table(entries: Sequence[CatalogEntry], fmt: str = "table") -> str:
    """The model listing as a text table or as JSON (a list of objects)."""
    if fmt == "json":
        return json.dumps([entry.to_dict() for entry in entries], indent=2)
    rows = [
        (
            e.name, e.kind, e.architecture, e.head, e.reduction_dim or "", _millions(e.params),
            e.input_size, e.lr_mode or "", e.top1 if e.top1 is not None else "",
            e.top5 if e.top5 is not None else "", e.filename or "", ", ".join(e.aliases),
        )
        for e in entries
    ]
    headers = ("name", "kind", "architecture", "head", "dim", "params", "input", "lr_mode", "top1", "top5",
               "filename", "aliases")
    return tabulate(rows, headers=headers, tablefmt="github")


def one_line(text: str, fmt: str) -> str:
    """User text (a run's --name, a model or file name) as one line of a ``fmt`` table: a line
    break would start a row of its own, and a ``|`` a column of a markdown table."""
    text = " ".join(text.splitlines()).replace("\t", " ")
    return text.replace("|", "\\|") if fmt == "github" else text


def render(rows: list[list], headers: list[str], fmt: str) -> str:
    """A table in one of TABLE_FORMATS; empty cells for missing values. CSV quotes what needs it;
    the other formats get every text on one line (``one_line``)."""
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows([["" if v is None else v for v in row] for row in rows])
        return buffer.getvalue()
    rows = [[f"{v:.2f}" if isinstance(v, float) else one_line(v, fmt) if isinstance(v, str) else v for v in row]
            for row in rows]  # floats also in mixed columns
    return tabulate(rows, headers=[one_line(h, fmt) for h in headers], tablefmt=fmt, disable_numparse=True,
                    missingval="")


def _summaries(store: ResultStore, runs: Sequence[Run], confidence: float | None = None) -> list[dict]:
    return [summarize(r, store.cells(r), confidence) for r in runs]


def _with_interval(value: float | None, interval: list[float] | None, fmt: str) -> float | str | None:
    """``value [low, high]``: the stored bounds of its interval, which are asymmetric near 0 and
    100 (Wilson, bootstrap), so no half-width can stand for them (not for CSV, whose numbers stay numbers)."""
    if value is None or interval is None or fmt == "csv":
        return value
    return f"{value:.2f} [{interval[0]:.2f}, {interval[1]:.2f}]"


def twin_comparisons(store: ResultStore, runs: Sequence[Run], alpha: float,
                  labels: Sequence[str] | None = None) -> dict[int, Comparison]:
    """Column of each GCP run whose GAP twin (same architecture, same images) is the column before:
    the paired comparison GAP → GCP."""
    labels = labels or run_labels(runs)
    found = {}
    for index in range(1, len(runs)):
        gap, gcp = runs[index - 1], runs[index]
        if twins(gap, gcp) and same_images(gap, gcp) and gap.config.get("protocol") == gcp.config.get("protocol"):
            found[index] = compare_runs(store, gap, gcp, (labels[index - 1], labels[index]), alpha)
    return found


def _delta(value: float | None, significant: bool | None) -> str | None:
    return None if value is None else f"{value:+.2f}{'*' if significant else ''}"


def _with_twins(rows: list[list], metrics: list[str], comparisons: dict[int, Comparison],
                headers: list[str]) -> tuple[list[list], list[str]]:
    """A "Δ GCP − GAP" column after each twin pair: the difference, * where significant."""
    for index in sorted(comparisons, reverse=True):
        comparison = comparisons[index]
        differences = comparison.by_metric()
        column = []
        for row, metric in zip(rows, metrics):
            gap, gcp = row[index], row[index + 1]
            delta = None
            if isinstance(gap, (int, float)) and isinstance(gcp, (int, float)):
                delta = gcp - gap
            elif metric in differences:
                delta = differences[metric].change
            interval = comparison.corruption_intervals.get(metric)
            significant = (not interval[0] <= 0 <= interval[1]) if interval else (
                differences[metric].significant if metric in differences else None)
            column.append(_delta(delta, significant))
        for row, value in zip(rows, column):
            row.insert(index + 2, value)
        headers.insert(index + 2, "Δ GCP − GAP")
    return rows, headers


def corruption_table(store: ResultStore, runs: Sequence[Run], fmt: str = "github",
                     confidence: float | None = DEFAULT_CONFIDENCE, pairs: bool = False,
                     alpha: float = DEFAULT_ALPHA, baseline: Run | None = None) -> str:
    """Per-corruption CE on ImageNet-sized runs where all five severities ran, mean error (%)
    otherwise; runs as columns; clean error and the aggregates with the bounds of their
    ``confidence`` interval. ``pairs``: a difference column after each GAP/GCP twin pair, with
    its paired significance. C-bar runs: error (%) per corruption, their mean error, and mCE /
    relative mCE relative to the ``baseline`` run of their protocol (never AlexNet's)."""
    if not runs:
        return "no corruption runs in the store"
    base_cells = store.cells(baseline) if baseline else None
    summaries = [summarize_corruptions(r, store.cells(r), [], confidence, baseline, base_cells) for r in runs]
    imagenet = imagenet_metrics(runs)
    order = dict.fromkeys([n for r in runs for n in benchmark_names(r.config.get("protocol"))] + known_names())
    corruptions = [n for n in order if any(n in s["errors"] for s in summaries)]
    rows: list[list] = [["clean error (%)", *[_with_interval(s["clean_error"], s.get("clean_error_ci"), fmt)
                                              for s in summaries]]]
    row_metrics = ["clean_error", *corruptions]
    for name in corruptions:
        complete = imagenet and name in names("all") and all(  # AlexNet's CE: ImageNet-C's corruptions only
            is_imagenet_run(r) and name in s["errors"] and None not in s["errors"][name]
            for r, s in zip(runs, summaries)
        )
        if complete:
            values = [round(corruption_error(name, [e / 100 for e in s["errors"][name]]), 2) for s in summaries]
            rows.append([f"{name} (CE)", *values])
        else:
            values = []
            for s in summaries:
                present = [e for e in s["errors"].get(name, []) if e is not None]
                values.append(round(sum(present) / len(present), 2) if present else None)
            rows.append([f"{name} (error %)", *values])
    normalised = imagenet or any(s["mCE"] is not None for s in summaries)
    metrics = ((("mCE", "mCE"), ("relative_mCE", "relative mCE")) if normalised else ()) + (
        ("mean_error", "mean error (%)"),)
    for key, label in metrics:
        rows.append([label, *[_with_interval(s[key], s.get(f"{key}_ci"), fmt) for s in summaries]])
        row_metrics.append(key)
    headers = ["metric", *run_labels(runs)]
    comparisons = twin_comparisons(store, runs, alpha) if pairs else {}
    rows, headers = _with_twins(rows, row_metrics, comparisons, headers)
    footnote = (f"\n\nΔ GCP − GAP: * significant at alpha {alpha:g} (paired over the same images: McNemar, "
                "Holm-corrected, for the clean error; paired bootstrap otherwise)") if comparisons else ""
    return render(rows, headers, fmt) + (footnote or (f"\n\n{NO_TWINS}" if pairs else "")) + \
        _c_bar_note(runs, baseline, fmt)


def _c_bar_note(runs: Sequence[Run], baseline: Run | None, fmt: str) -> str:
    """What a C-bar run's mCE is relative to: a stored baseline run, never AlexNet."""
    if not any(is_c_bar_run(r) for r in runs):
        return ""
    if baseline is None:
        return "\n\nC-bar runs: mean error over the protocol's 10 corruptions; pass --baseline-run for their mCE"
    return (f"\n\nC-bar runs: mean error over the protocol's 10 corruptions; mCE and relative mCE relative to run "
            f"{baseline.id} ({one_line(run_label(baseline), fmt)}) = 100")


def attack_tables(store: ResultStore, runs: Sequence[Run], fmt: str = "github",
                  confidence: float | None = DEFAULT_CONFIDENCE, pairs: bool = False,
                  alpha: float = DEFAULT_ALPHA) -> str:
    """Robust accuracy (%): one block per attack plus, with several attacks, the worst case;
    runs as rows, ε as columns; each value with the bounds of its ``confidence`` interval.
    ``pairs``: a difference row after each GAP/GCP twin pair, with its McNemar significance."""
    if not runs:
        return "no attack runs in the store"
    summaries = _summaries(store, runs, confidence)
    labels = run_labels(runs, [list(s["robust_accuracy"]) for s in summaries])
    attacks = list(dict.fromkeys(a for s in summaries for a in s["robust_accuracy"]))
    blocks = [(a, [(s["robust_accuracy"].get(a, {}), s.get("robust_accuracy_ci", {}).get(a, {})) for s in summaries])
              for a in attacks]
    if len(attacks) > 1:
        blocks.append(("worst case over attacks", [(s["worst_case"], s.get("worst_case_ci", {})) for s in summaries]))
    comparisons = twin_comparisons(store, runs, alpha, labels) if pairs else {}
    text = []
    for title, per_run in blocks:
        # ε = 0 is the clean image: its column would repeat "clean"
        levels = [lv for lv in dict.fromkeys(level for values, _ in per_run for level in values) if epsilon_value(lv)]
        rows = [[label, _with_interval(summary["clean_accuracy"], summary.get("clean_accuracy_ci"), fmt),
                 *[_with_interval(values.get(level), intervals.get(level), fmt) for level in levels]]
                for label, summary, (values, intervals) in zip(labels, summaries, per_run)]
        prefix = "worst_case" if title.startswith("worst case") else title
        for index in sorted(comparisons, reverse=True):  # a difference row after each twin pair
            differences = comparisons[index].by_metric()
            row = ["Δ GCP − GAP"]
            for metric in ["clean_accuracy", *[f"{prefix}@{level}" for level in levels]]:
                found = differences.get(metric)
                row.append(_delta(found.change, found.significant) if found else None)
            rows.insert(index + 1, row)
        headers = ["run", "clean", *[f"eps {v}" for v in levels]]
        text.append(f"{title} (robust accuracy %)\n" + render(rows, headers, fmt))
    if comparisons:
        text.append(f"Δ GCP − GAP: * significant at alpha {alpha:g} (McNemar's exact test over the same images, "
                    "Holm-corrected)")
    elif pairs:
        text.append(NO_TWINS)
    return "\n\n".join(text)


def tidy_csv(store: ResultStore, runs: Sequence[Run], trends: Mapping[str, Trend] | None = None) -> str:
    """Every number of ``runs`` as one CSV table: run, label, kind, metric, level, value
    (``trends``: given trends of effective robustness, by shift)."""
    rows, effective = [], EffectiveRobustness(store, trends)
    for run, summary in zip(runs, _summaries(store, runs, None)):
        if run.kind == "shift":
            summary = {**summary, "effective_robustness": effective.estimate(run).value}
        attacks = list(summary.get("robust_accuracy", ()))
        rows += [[run.id, run_label(run, attacks), run.kind, *values] for values in _tidy_values(run.kind, summary)]
    return render(rows, ["run", "label", "kind", "metric", "level", "value"], "csv")


def _tidy_values(kind: str, summary: dict) -> list[tuple[str, str, float | None]]:
    """(metric, level, value) of every number of a summary."""
    if kind == "shift":  # level: the shifted set
        return [(metric, summary["shift"], summary[metric]) for metric in
                ("clean_error", "clean_top5_error", "top1_error", "top5_error", "effective_robustness")]
    if kind == "perturbation":  # level: perturbation/difficulty
        return [(metric, f"{name}/{difficulty}", value) for metric in ("flip_probability", "top5_distance")
                for name, by_difficulty in summary[metric].items() for difficulty, value in by_difficulty.items()]
    if kind == "corruption":
        return [("clean_error", "", summary["clean_error"]),
                *((name, str(severity), rate) for name, rates in summary["errors"].items()
                  for severity, rate in enumerate(rates, start=1) if rate is not None),
                *((key, "", summary[key]) for key in ("mCE", "relative_mCE", "mean_error"))]
    return [("clean_accuracy", "", summary["clean_accuracy"]),
            *((attack, eps, value) for attack, by_eps in summary["robust_accuracy"].items()
              for eps, value in by_eps.items()),
            *(("worst_case", eps, value) for eps, value in summary["worst_case"].items())]


def runs_table(store: ResultStore, runs: Sequence[Run]) -> str:
    """The stored runs: id, date, kind, label, cells, and what identifies them."""
    rows = []
    for run, label in zip(runs, run_labels(runs)):
        config = run.config
        data = config.get("dataset") or ""
        rows.append([run.id, run.created, run.kind, one_line(label, "github"), len(store.cells(run)),
                     one_line(data, "github"),
                     (config.get("checkpoint_sha256") or "")[:12], config.get("version", "")])
    return tabulate(rows, headers=["id", "created (UTC)", "kind", "run", "cells", "dataset", "checkpoint", "version"],
                    tablefmt="github")


def comparison_table(comparison: Comparison, threshold: float, names: tuple[str, str]) -> str:
    """The markdown regression table of ``gcp-robust compare``, its two runs named in the header,
    each difference with its interval or McNemar p-value, and how they were obtained."""
    rows = []
    for d in comparison.differences:
        verdict = "" if d.worse_by is None else ("WORSE" if d.worse_by > threshold else "ok")
        if verdict and d.significant is not None:
            verdict += ", significant" if d.significant else ", not significant"
        interval = f"[{d.interval[0]:.2f}, {d.interval[1]:.2f}]" if d.interval else None
        p_value = f"{d.p_value:.3g}" if d.p_value is not None else None
        rows.append([d.metric, d.baseline, d.current, d.worse_by, interval, p_value, verdict])
    headers = ["metric", f"baseline: {names[0]}", f"current: {names[1]}", "worse by (points)", "interval of it",
               "p (McNemar, Holm)", f"verdict (> {threshold:g} points)"]
    shown = [i for i, header in enumerate(headers) if header != "p (McNemar, Holm)" or any(r[i] for r in rows)]
    table = render([[row[i] for i in shown] for row in rows], [headers[i] for i in shown], "github")
    return f"{table}\n\n{comparison.note}"


def comparison_json(comparison: Comparison, threshold: float, names: tuple[str, str], significant_only: bool) -> str:
    """The comparison as JSON: every difference, its interval and p-value, and the verdict."""
    failing = {d.metric for d in comparison.regressions(threshold, significant_only)}
    return json.dumps({
        "baseline": names[0], "current": names[1], "paired": comparison.paired, "note": comparison.note,
        "max_increase": threshold, "regressions": sorted(failing),
        "differences": [{"metric": d.metric, "baseline": d.baseline, "current": d.current, "worse_by": d.worse_by,
                         "interval": list(d.interval) if d.interval else None, "p_value": d.p_value,
                         "significant": d.significant, "regression": d.metric in failing}
                        for d in comparison.differences],
    }, indent=2)


def comparison_junit(comparison: Comparison, threshold: float, names: tuple[str, str], significant_only: bool) -> str:
    """The comparison as JUnit XML, one test case per metric, failing for the regressions, so CI
    systems list them."""
    from xml.etree import ElementTree

    failing = {d.metric for d in comparison.regressions(threshold, significant_only)}
    suite = ElementTree.Element("testsuite", name=f"gcp-robust compare {names[0]} -> {names[1]}",
                                tests=str(len(comparison.differences)), failures=str(len(failing)))
    ElementTree.SubElement(suite, "properties").extend(
        [ElementTree.Element("property", name="note", value=comparison.note)])
    for d in comparison.differences:
        case = ElementTree.SubElement(suite, "testcase", classname="gcp-robust.compare", name=d.metric)
        if d.metric in failing:
            detail = f"worse by {d.worse_by} points (baseline {d.baseline}, current {d.current})"
            if d.interval:
                detail += f", interval [{d.interval[0]}, {d.interval[1]}]"
            if d.p_value is not None:
                detail += f", p = {d.p_value:.3g}"
            ElementTree.SubElement(case, "failure", message=detail, type="regression").text = detail
    return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True)


def perturbation_table(store: ResultStore, runs: Sequence[Run], fmt: str = "github",
                       baseline: Run | None = None, difficulties: Sequence[int] = ()) -> str:
    """Flip probability (%) and top-5 distance per perturbation and difficulty (``difficulties``,
    by default those all of a run's perturbations have), runs as columns; with a baseline run
    also FR and normalised T5D per perturbation and their means mFR / mT5D, from the sums over
    the difficulties (the published ones: difficulty 1 alone)."""
    if not runs:
        return "no perturbation runs in the store"
    base_cells = store.cells(baseline) if baseline else None
    summaries = [summarize_perturbations(r, store.cells(r), (), difficulties, baseline, base_cells) for r in runs]
    order = [p for p in ORDER if any(p in s["flip_probability"] for s in summaries)]
    levels = sorted({int(d) for s in summaries for by in s["flip_probability"].values() for d in by})
    rows: list[list] = []
    for name in order:
        for level in levels:
            rows.append([f"{name} FP d={level} (%)",
                         *[_scaled(s["flip_probability"].get(name, {}).get(str(level)), 100) for s in summaries]])
        if baseline:
            rows.append([f"{name} FR", *[(s["flip_rate"] or {}).get(name) for s in summaries]])
    for name in order:
        for level in levels:
            rows.append([f"{name} T5D d={level}",
                         *[s["top5_distance"].get(name, {}).get(str(level)) for s in summaries]])
    for level in levels:
        rows.append([f"mean FP, test set, d={level} (%)",
                     *[_scaled(s["mean_flip_probability"].get(str(level)), 100) for s in summaries]])
    if baseline:
        rows += [["mFR", *[s["mFR"] for s in summaries]], ["mT5D", *[s["mT5D"] for s in summaries]]]
    used = ", ".join(dict.fromkeys(_difficulty_set(s["difficulties"]) for s in summaries))
    note = f"\n\nd = difficulty: frames compared d apart (noise: the d-th noise sequence); run at {used}"
    if baseline:
        note += (f"; FR, mFR and mT5D relative to run {baseline.id} ({one_line(run_label(baseline), fmt)}) = 100, "
                 f"{_rates_note(summaries)}")
    else:
        note += "; pass --baseline-run for FR, mFR and mT5D"
    return render(rows, ["metric", *run_labels(runs)], fmt) + note


def _difficulty_set(difficulties: Sequence[int]) -> str:
    return f"difficult{'y' if len(difficulties) == 1 else 'ies'} {'/'.join(map(str, difficulties)) or 'none'}"


def _rates_note(summaries: Sequence[dict]) -> str:
    """Which difficulties the rates of ``summaries`` come from."""
    sets = list(dict.fromkeys(tuple(s["rates_over_difficulties"] or s["difficulties"]) for s in summaries))
    if sets == [(1,)]:
        return "at difficulty 1 (as ImageNet-P's test.py and the published numbers)"
    return (f"from FP and T5D summed over {' and '.join(_difficulty_set(d) for d in sets)} "
            "(the published numbers use difficulty 1 alone)")


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else round(value * factor, 4)


PUBLISHED_COLUMNS = {"clean top-1": "clean_accuracy", "mCE": "mCE", "relative mCE": "relative_mCE", "mFR": "mFR",
                     "mT5D": "mT5D"}


def _with_published(rows: list[list], headers: list[str], published: Mapping[str, Published | None]) -> None:
    """A "published" column after each metric the seed release published, filled for seed checkpoints."""
    for column in reversed([i for i, header in enumerate(headers) if header in PUBLISHED_COLUMNS]):
        metric = PUBLISHED_COLUMNS[headers[column]]
        for row in rows:
            found = published.get(row[0])
            row.insert(column + 1, found.values().get(metric) if found else None)
        headers.insert(column + 1, f"{headers[column]}, published")


def robustness_table(store: ResultStore, corruption_runs: Sequence[Run], perturbation_runs: Sequence[Run],
                     fmt: str = "github", baseline: Run | None = None, attack_runs: Sequence[Run] = (),
                     shift_runs: Sequence[Run] = (), trends: Mapping[str, Trend] | None = None,
                     published: bool = False) -> str:
    """The paper's layout: a row per model (GAP next to GCP) with its clean top-1 and the mCE and
    relative mCE of its newest corruption run, the effective robustness of its newest run on each
    natural shift (``trends``: given trends by shift), mFR and mT5D of its newest perturbation
    run, and the worst-case robust accuracy per ε of its newest attack run. ``published``: the
    seed release's number beside each metric of a seed checkpoint."""
    corruption_runs = [r for r in corruption_runs if not is_c_bar_run(r)]  # the paper's mCE is ImageNet-C's
    newest = [{r.model: r for r in sorted(runs, key=lambda r: r.id)}
              for runs in (corruption_runs, perturbation_runs, attack_runs, shift_runs)]
    corruption, perturbation, attack, _ = newest
    shifts, effective = EffectiveRobustness(store, trends).newest_by_model(shift_runs)
    models = sorted(set().union(*newest), key=lambda m: column_order(next(k[m] for k in newest if m in k)))
    base_cells = store.cells(baseline) if baseline else None
    attacks = {m: summarize(r, store.cells(r), None) for m, r in attack.items()}
    levels = sorted({lv for s in attacks.values() for lv in s["worst_case"]}, key=lambda lv: float(Fraction(lv)))
    rows, rated = [], []
    for model in models:
        c, p = corruption.get(model), perturbation.get(model)
        cs = summarize(c, store.cells(c), None) if c else {}
        ps = summarize_perturbations(p, store.cells(p), baseline=baseline, baseline_cells=base_cells) if p else {}
        at = attacks.get(model, {})
        clean = 100 - cs["clean_error"] if cs.get("clean_error") is not None else at.get("clean_accuracy")
        rows.append([model, None if clean is None else round(clean, 4), cs.get("mCE"), cs.get("relative_mCE"),
                     *[effective.get(model, {}).get(shift) for shift in shifts],
                     ps.get("mFR"), ps.get("mT5D"), *[at.get("worst_case", {}).get(lv) for lv in levels]])
        if ps.get("rates_over_difficulties"):
            rated.append(ps)
    note = f"\n\nmFR and mT5D {_rates_note(rated)}" if rated else ""
    headers = ["model", "clean top-1", "mCE", "relative mCE", *[f"ER {shift}" for shift in shifts], "mFR", "mT5D",
               *[f"robust @ {lv}" for lv in levels]]
    if shifts:
        note += ("\n\nER: effective robustness (points of top-1 accuracy above the trend of the models in the store, "
                 "or of --trend; see the shift tables)")
    if published:
        checkpoints = {m: k[m].config.get("checkpoint_sha256") for k in reversed(newest) for m in k}
        _with_published(rows, headers, {m: published_for(m, sha) for m, sha in checkpoints.items()})
        note += ("\n\npublished: the numbers the seed release's README gives for its checkpoints (and torchvision's "
                 "documentation for the V1 ResNets its GAP rows used)")
    shown = [0] + [i for i in range(1, len(headers)) if any(row[i] is not None for row in rows)]
    if not set(shown) - {0, 1}:  # no robustness number to lay out (e.g. CIFAR runs have no mCE): no table
        return ""
    return render([[row[i] for i in shown] for row in rows], [headers[i] for i in shown], fmt) + note
