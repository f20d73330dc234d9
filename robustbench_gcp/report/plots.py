"""Plots of stored runs and training logs (matplotlib, headless): one legend per figure, one
line per run."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from ..attacks import epsilon_value
from ..corruptions import known_names
from ..fileio import AtomicFile, check_output_file
from ..results import Cell, ResultStore, Run
from ..stability import ORDER
from ..statistics import DEFAULT_CONFIDENCE, proportion_interval
from ..summaries import summarize_attacks, summarize_corruptions, summarize_perturbations
from .runs import ReportError, run_labels

PLOT_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg")


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


def _legend_label(label: str) -> str:
    """A run or log name as the legend shows it, literally: a ``$`` would start mathtext (a bad
    formula fails when the file is written), a leading ``_`` would hide the line from the
    legend, and a line break would make the entry two."""
    label = " ".join(label.splitlines()).replace("$", r"\$")
    return f" {label}" if label.startswith("_") else label


def _save(plt, figure, out: str | Path) -> Path:
    """One legend for the whole figure, below the panels, then the file."""
    handles, labels = {}, []
    for axis in figure.axes:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            if label not in handles:
                handles[label] = handle
                labels.append(label)
    if labels:
        width, height = figure.get_size_inches()
        longest = max(len(label) for label in labels) * 0.065 + 0.5  # inches at font size 7
        columns = max(1, min(len(labels), int(width // longest)))
        rows = math.ceil(len(labels) / columns)
        legend_height = 0.2 * rows + 0.1
        figure.set_size_inches(max(width, longest), height + legend_height)
        figure.legend([handles[label] for label in labels], labels, loc="lower center", ncol=columns, fontsize=7,
                      frameon=False)
        figure.tight_layout(rect=(0, legend_height / (height + legend_height), 1, 1))
    else:
        figure.tight_layout()
    out = plot_path(out)
    with AtomicFile(out) as file:  # a full disk: one line naming the plot, no truncated file
        figure.savefig(file, dpi=120, format=out.suffix[1:])
    plt.close(figure)
    return out


def _run_legends(runs: Sequence[Run]) -> list[str]:
    return [_legend_label(label) for label in run_labels(runs)]


def plot_attacks(store: ResultStore, runs: Sequence[Run], out: str | Path) -> Path:
    """Robust accuracy against ε, one panel per attack (and the worst case when several attacks
    ran), each line with its 95 % Wilson band, ε labelled as given (k/255 stays k/255)."""
    if not runs:
        raise ReportError("no attack runs in the store to plot; run gcp-robust eval-attack first")
    plt = _pyplot()
    summaries = [summarize_attacks(r, store.cells(r)) for r in runs]  # with their Wilson intervals
    attacks = list(dict.fromkeys(a for s in summaries for a in s["robust_accuracy"]))
    panels = attacks + (["worst case"] if len(attacks) > 1 else [])
    figure, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), squeeze=False, sharey=True)
    for axis, panel in zip(axes[0], panels):
        ticks: dict[float, str] = {}
        for label, summary in zip(_run_legends(runs), summaries):
            worst = panel == "worst case"
            values = summary["worst_case"] if worst else summary["robust_accuracy"].get(panel, {})
            intervals = summary["worst_case_ci"] if worst else summary["robust_accuracy_ci"].get(panel, {})
            if values:
                xs = [epsilon_value(k) for k in values]
                ticks.update(zip(xs, values))
                (line,) = axis.plot(xs, list(values.values()), marker="o", label=label)
                _band(axis, xs, [intervals.get(k) for k in values], line.get_color())
        axis.set_xticks(list(ticks), list(ticks.values()), rotation=45, fontsize=7)
        axis.set_title(panel, fontsize=9)
        axis.set_xlabel("epsilon")
        axis.grid(alpha=0.3)
    axes[0, 0].set_ylabel("robust accuracy (%)")
    return _save(plt, figure, out)


def read_training_log(log: Path) -> list[dict]:
    """The epochs of a ``log.jsonl`` (one JSON object per line with epoch, loss and val_top1)."""
    try:
        history = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        if history and all(isinstance(h["epoch"], int) and isinstance(h["loss"], (int, float))
                           and isinstance(h["val_top1"], (int, float)) for h in history):
            return history
    except (ValueError, TypeError, KeyError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        pass
    raise ReportError(f"{log} is not a training log (one JSON object per line with epoch, loss and val_top1); "
                      "pass the log.jsonl gcp-robust train writes")


def plot_learning_curves(logs: Sequence[str | Path], out: str | Path) -> Path:
    """Training loss and validation top-1 per epoch, one line per ``log.jsonl`` (e.g. GAP and GCP)."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    figure, (loss_axis, top1_axis) = plt.subplots(1, 2, figsize=(9, 3.4))
    for log in logs:
        log = Path(log)
        history = read_training_log(log)
        epochs = [h["epoch"] + 1 for h in history]
        label = _legend_label(log.parent.name)
        loss_axis.plot(epochs, [h["loss"] for h in history], marker="o", label=label)
        top1_axis.plot(epochs, [h["val_top1"] for h in history], marker="o", label=label)
    for axis, title in ((loss_axis, "training loss"), (top1_axis, "validation top-1 (%)")):
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_title(title, fontsize=9)
        axis.grid(alpha=0.3)
    return _save(plt, figure, out)


def _wilson(cell: Cell) -> list[float] | None:
    """The 95 % Wilson interval of a cell's top-1 error, in percent."""
    if not cell.n:
        return None
    low, high = proportion_interval(cell.top1_errors, cell.n, DEFAULT_CONFIDENCE)
    return [100 * low, 100 * high]


def _band(axis, xs: Sequence[float], intervals: Sequence[list[float] | None], color: str) -> None:
    """The confidence band of a line, where its points have intervals."""
    known = [(x, i) for x, i in zip(xs, intervals) if i is not None]
    if known:
        axis.fill_between([x for x, _ in known], [i[0] for _, i in known], [i[1] for _, i in known], color=color,
                          alpha=0.15, linewidth=0)


def plot_corruptions(store: ResultStore, runs: Sequence[Run], out: str | Path) -> Path:
    """Top-1 error against severity, one panel per corruption, one line per run with its 95 %
    Wilson band, and the run's clean error as a dashed line."""
    if not runs:
        raise ReportError("no corruption runs in the store to plot; run gcp-robust eval-corruption first")
    plt = _pyplot()
    summaries = [summarize_corruptions(r, store.cells(r), [], None) for r in runs]
    corruptions = [n for n in known_names() if any(n in s["errors"] for s in summaries)]
    columns = min(5, len(corruptions))
    rows = math.ceil(len(corruptions) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows + 0.4), squeeze=False,
                                sharey=True)
    cells = [store.cells(r) for r in runs]
    for axis, name in zip(axes.flat, corruptions):
        for label, summary, stored in zip(_run_legends(runs), summaries, cells):
            rates = summary["errors"].get(name, [None] * 5)
            points = [(s, e) for s, e in zip(range(1, 6), rates) if e is not None]
            if points:
                (line,) = axis.plot(*zip(*points), marker="o", label=label)
                _band(axis, [s for s, _ in points], [_wilson(stored[name, str(s)]) for s, _ in points],
                      line.get_color())
                if summary["clean_error"] is not None:  # the clean error, for reference
                    axis.axhline(summary["clean_error"], color=line.get_color(), linestyle="--", linewidth=0.8)
        axis.set_title(name, fontsize=9)
        axis.set_xticks(range(1, 6))
        axis.grid(alpha=0.3)
    for axis in axes.flat[len(corruptions):]:
        axis.axis("off")
    axes[0, 0].set_ylabel("top-1 error (%)")
    for index, axis in enumerate(axes.flat[: len(corruptions)]):
        if index + columns >= len(corruptions):  # the lowest panel of each column
            axis.set_xlabel("severity")
    return _save(plt, figure, out)


def plot_perturbations(store: ResultStore, runs: Sequence[Run], out: str | Path) -> Path:
    """Flip probability per perturbation, one bar per run and difficulty."""
    if not runs:
        raise ReportError("no perturbation runs in the store to plot; run gcp-robust eval-perturbation first")
    plt = _pyplot()
    summaries = [summarize_perturbations(r, store.cells(r)) for r in runs]
    order = [p for p in ORDER if any(p in s["flip_probability"] for s in summaries)]
    levels = sorted({d for s in summaries for by in s["flip_probability"].values() for d in by}, key=int)
    bars = [(label if len(levels) == 1 else f"{label}, difficulty {level}", summary, level)
            for label, summary in zip(_run_legends(runs), summaries) for level in levels]
    figure, axis = plt.subplots(figsize=(max(5.0, 0.4 * len(order) * len(bars) + 2), 3.6))
    width = 0.8 / len(bars)
    for offset, (label, summary, level) in enumerate(bars):
        values = [100 * summary["flip_probability"].get(p, {}).get(level, float("nan")) for p in order]
        axis.bar([i + offset * width for i in range(len(order))], values, width, label=label)
    axis.set_xticks([i + width * (len(bars) - 1) / 2 for i in range(len(order))], order, rotation=45, ha="right",
                    fontsize=7)
    axis.set_ylabel("flip probability (%)" if len(levels) != 1 else f"flip probability (%), difficulty {levels[0]}")
    axis.grid(alpha=0.3, axis="y")
    return _save(plt, figure, out)
