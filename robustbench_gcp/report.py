"""Tables (tabulate) and plots (matplotlib) of the zoo and of stored runs."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

from tabulate import tabulate

from .attacks import parse_epsilons
from .corruptions import names
from .errors import Error
from .fileio import check_output_file
from .metrics import corruption_error
from .models.catalog import CatalogEntry
from .models.registry import UnknownModelError, architecture_info
from .models.zoo import checkpoint_record
from .results import ResultStore, Run
from .summaries import Difference, summarize_attacks, summarize_corruptions

TABLE_FORMATS = ("github", "latex", "plain", "csv")
PLOT_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg")


class ReportError(Error, ValueError):
    """Nothing to report, or nowhere to write it."""


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
            e.top5 if e.top5 is not None else "", ", ".join(e.aliases),
        )
        for e in entries
    ]
    headers = ("name", "kind", "architecture", "head", "dim", "params", "input", "lr_mode", "top1", "top5", "aliases")
    return tabulate(rows, headers=headers, tablefmt="github")


def render(rows: list[list], headers: list[str], fmt: str) -> str:
    """A table in one of TABLE_FORMATS; empty cells for missing values."""
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows([["" if v is None else v for v in row] for row in rows])
        return buffer.getvalue()
    return tabulate(rows, headers=headers, tablefmt=fmt, floatfmt=".2f", missingval="")


def _column_order(run: Run) -> tuple:
    """GAP next to GCP: sort by architecture family and depth, then head, then run id."""
    record = checkpoint_record(run.model)
    try:
        info = architecture_info(record.architecture if record else run.model)
        base = info.name.rsplit("_", 1)[0]
        return (info.family, base, info.head, run.model, run.id)
    except UnknownModelError:
        return ("~", run.model, "", run.model, run.id)


def _labels(runs: list[Run]) -> list[str]:
    counts = {r.model: sum(o.model == r.model for o in runs) for r in runs}
    return [r.model if counts[r.model] == 1 else f"{r.model}#{r.id}" for r in runs]


def corruption_runs(store: ResultStore, models: list[str] | None) -> list[tuple[Run, dict]]:
    runs = sorted(store.runs("corruption", models), key=_column_order)
    return [(run, summarize_corruptions(run, store.cells(run), [])) for run in runs]


def corruption_table(store: ResultStore, models: list[str] | None = None, fmt: str = "github") -> str:
    """Per-corruption CE (or mean error where severities are missing), models as columns."""
    runs = corruption_runs(store, models)
    if not runs:
        return "no corruption runs in the store"
    corruptions = [n for n in names("all") if any(n in s["errors"] for _, s in runs)]
    rows: list[list] = [["clean error (%)", *[s["clean_error"] for _, s in runs]]]
    for name in corruptions:
        complete = all(name in s["errors"] and None not in s["errors"][name] for _, s in runs)
        if complete:
            values = [round(corruption_error(name, [e / 100 for e in s["errors"][name]]), 2) for _, s in runs]
            rows.append([f"{name} (CE)", *values])
        else:
            values = []
            for _, s in runs:
                present = [e for e in s["errors"].get(name, []) if e is not None]
                values.append(round(sum(present) / len(present), 2) if present else None)
            rows.append([f"{name} (error %)", *values])
    for key, label in (("mCE", "mCE"), ("relative_mCE", "relative mCE"), ("mean_error", "mean error (%)")):
        rows.append([label, *[s[key] for _, s in runs]])
    return render(rows, ["metric", *_labels([r for r, _ in runs])], fmt)


def attack_runs(store: ResultStore, models: list[str] | None) -> list[tuple[Run, dict]]:
    runs = sorted(store.runs("attack", models), key=_column_order)
    return [(run, summarize_attacks(run, store.cells(run))) for run in runs]


def attack_tables(store: ResultStore, models: list[str] | None = None, fmt: str = "github") -> str:
    """Robust accuracy (%): one block per attack plus the worst case; models as rows, ε as columns."""
    runs = attack_runs(store, models)
    if not runs:
        return "no attack runs in the store"
    labels = _labels([r for r, _ in runs])
    blocks = [(a, [s["robust_accuracy"].get(a, {}) for _, s in runs])
              for a in dict.fromkeys(a for _, s in runs for a in s["robust_accuracy"])]
    blocks.append(("worst case over attacks", [s["worst_case"] for _, s in runs]))
    text = []
    for title, per_run in blocks:
        levels = list(dict.fromkeys(level for values in per_run for level in values))
        rows = [[label, summary["clean_accuracy"], *[values.get(level) for level in levels]]
                for label, (_, summary), values in zip(labels, runs, per_run)]
        headers = ["model", "clean", *[f"eps {v}" for v in levels]]
        text.append(f"{title} (robust accuracy %)\n" + render(rows, headers, fmt))
    return "\n\n".join(text)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_path(out: str | Path) -> Path:
    """The file a plot goes to: a PNG when ``out`` names no format; refused when it is a directory
    or names a format we do not write."""
    out = check_output_file(out, "--out")
    if not out.suffix:
        return out.with_suffix(".png")
    if out.suffix[1:].lower() not in PLOT_FORMATS:
        raise ReportError(f"--out {out}: plots are written as {', '.join(PLOT_FORMATS)}; use one of those suffixes")
    return out


def _save(figure, out: str | Path) -> Path:
    out = plot_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    figure.clear()
    return out


def plot_attacks(store: ResultStore, out: str | Path, models: list[str] | None = None) -> Path:
    """Robust accuracy against ε, one panel per attack (and the worst case), one line per run."""
    plt = _pyplot()
    runs = attack_runs(store, models)
    if not runs:
        raise ReportError("no attack runs in the store to plot; run gcp-robust eval-attack first")
    panels = list(dict.fromkeys(a for _, s in runs for a in s["robust_accuracy"])) + ["worst case"]
    figure, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.0), squeeze=False, sharey=True)
    for axis, panel in zip(axes[0], panels):
        for label, (_, summary) in zip(_labels([r for r, _ in runs]), runs):
            values = summary["worst_case"] if panel == "worst case" else summary["robust_accuracy"].get(panel, {})
            if values:
                axis.plot([parse_epsilons(k)[0][1] for k in values], list(values.values()), marker="o", label=label)
        axis.set_title(panel, fontsize=9)
        axis.set_xlabel("epsilon")
        axis.grid(alpha=0.3)
    axes[0, 0].set_ylabel("robust accuracy (%)")
    axes[0, 0].legend(fontsize=7)
    figure.tight_layout()
    path = _save(figure, out)
    plt.close(figure)
    return path


def plot_learning_curves(logs: Sequence[str | Path], out: str | Path) -> Path:
    """Training loss and validation top-1 per epoch, one line per ``log.jsonl`` (e.g. GAP and GCP)."""
    plt = _pyplot()
    figure, (loss_axis, top1_axis) = plt.subplots(1, 2, figsize=(9, 3.2))
    for log in logs:
        log = Path(log)
        history = [json.loads(line) for line in log.read_text().splitlines()]
        epochs = [h["epoch"] + 1 for h in history]
        label = log.parent.name
        loss_axis.plot(epochs, [h["loss"] for h in history], marker="o", label=label)
        top1_axis.plot(epochs, [h["val_top1"] for h in history], marker="o", label=label)
    for axis, title in ((loss_axis, "training loss"), (top1_axis, "validation top-1 (%)")):
        axis.set_xlabel("epoch")
        axis.set_title(title, fontsize=9)
        axis.grid(alpha=0.3)
    top1_axis.legend(fontsize=7)
    figure.tight_layout()
    path = _save(figure, out)
    plt.close(figure)
    return path


def plot_corruptions(store: ResultStore, out: str | Path, models: list[str] | None = None) -> Path:
    """Top-1 error against severity, one panel per corruption, one line per run."""
    plt = _pyplot()
    runs = corruption_runs(store, models)
    if not runs:
        raise ReportError("no corruption runs in the store to plot; run gcp-robust eval-corruption first")
    corruptions = [n for n in names("all") if any(n in s["errors"] for _, s in runs)]
    columns = min(5, len(corruptions))
    rows = math.ceil(len(corruptions) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False, sharey=True)
    labels = _labels([r for r, _ in runs])
    for axis, name in zip(axes.flat, corruptions):
        for label, (_, summary) in zip(labels, runs):
            rates = summary["errors"].get(name, [None] * 5)
            points = [(s, e) for s, e in zip(range(1, 6), rates) if e is not None]
            if points:
                axis.plot(*zip(*points), marker="o", label=label)
        axis.set_title(name, fontsize=9)
        axis.set_xticks(range(1, 6))
        axis.grid(alpha=0.3)
    for axis in axes.flat[len(corruptions):]:
        axis.axis("off")
    axes[0, 0].set_ylabel("top-1 error (%)")
    axes[0, 0].legend(fontsize=7)
    figure.supxlabel("severity")
    figure.tight_layout()
    path = _save(figure, out)
    plt.close(figure)
    return path


def comparison_table(differences: list[Difference], threshold: float) -> str:
    """The markdown regression table of ``gcp-robust compare``."""
    rows = []
    for d in differences:
        flag = "WORSE" if d.worse_by is not None and d.worse_by > threshold else ""
        rows.append([d.metric, d.baseline, d.current, d.worse_by, flag])
    return render(rows, ["metric", "baseline", "current", "worse by (points)", ""], "github")
