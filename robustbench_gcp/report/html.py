"""``gcp-robust report``: one self-contained HTML page of stored runs.

The page is rendered from ``report_data`` (the record ``table --format json`` prints) through a
Jinja2 template. Styles, the small sorting script, the figures (matplotlib SVG) and the record
itself are inline, and nothing refers to the network, so the file opens offline, attached to a
pull request or mailed. Every number cell carries its value and the path of that value in the
record (``data-value``, ``data-src``), which is what sorting uses and what tests compare.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from ..attacks import epsilon_value
from ..corruptions import names
from ..fileio import atomic_write_text, check_output_file
from ..results import ResultStore, Run
from ..stability import ORDER
from .plots import plot_attacks, plot_perturbations
from .runs import ReportError

# Corruption runs get the colour-scaled grid instead: fifteen panels of many runs do not read.
FIGURES: dict[str, Callable[[ResultStore, Sequence[Run], Path], Path]] = {
    "attack": plot_attacks, "perturbation": plot_perturbations}


def report_path(out: str | Path) -> Path:
    """The page's file: refused before anything is computed when it cannot be one."""
    out = check_output_file(out, "--out")
    if out.suffix.lower() not in (".html", ".htm"):
        raise ReportError(f"--out {out}: the report is one HTML file; name it with .html")
    return out


def _svg(draw: Callable[[ResultStore, Sequence[Run], Path], Path], store: ResultStore, runs: Sequence[Run]) -> str:
    """A figure as inline SVG: text stays text (smaller, searchable), ids are stable between runs,
    and no URL is left in it (the metadata's and the namespaces', which HTML does not need)."""
    import matplotlib

    with tempfile.TemporaryDirectory() as folder, matplotlib.rc_context(
            {"svg.fonttype": "none", "svg.hashsalt": "gcp-robust-report"}):
        text = draw(store, runs, Path(folder) / "figure.svg").read_text()
    text = re.sub(r"<metadata>.*?</metadata>", "", text[text.index("<svg"):], flags=re.S)  # a date, RDF links
    return re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text, count=0)  # inline in HTML, SVG needs no namespaces


def _cell(value: float | None, interval: Sequence[float] | None, src: Sequence, scale: float = 1) -> dict:
    """What a number cell shows (``scale`` × the value: fractions as percent), the value it sorts by
    and where that value sits in the record."""
    if value is None:
        return {"text": "", "value": "", "src": ""}
    text = str(value) if isinstance(value, int) else f"{value * scale:.2f}"
    text += f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else ""
    return {"text": text, "value": repr(value), "src": json.dumps(list(src))}


def _shade(error: float | None) -> str:
    """Background of a grid cell: white at 0 % error, deep red at 100 %."""
    if error is None or not math.isfinite(error):
        return "transparent"
    return f"hsl(0, 75%, {97 - 0.55 * max(0.0, min(100.0, error)):.1f}%)"


def _published_cells(record: Mapping, index: int, metric: str) -> list[dict]:
    published = record["published"]
    if not published or metric not in published["values"]:
        return [_cell(None, None, ()), _cell(None, None, ())]
    return [_cell(published["values"][metric], None, ("runs", index, "published", "values", metric)),
            _cell(published["differences"].get(metric), None, ("runs", index, "published", "differences", metric))]


def _corruption_section(indexed: list[tuple[int, Mapping]]) -> dict:
    """The summary rows, and one colour-scaled corruption × severity grid per run."""
    metrics = [("clean_error", "clean error (%)"), ("mCE", "mCE"), ("relative_mCE", "relative mCE"),
               ("mean_error", "mean error (%)")]
    shown = [(key, label) for key, label in metrics if any(r["summary"].get(key) is not None for _, r in indexed)]
    published = [(key, label) for key, label in shown if any(
        r["published"] and key in r["published"]["values"] for _, r in indexed)]
    rows, grids = [], []
    for index, record in indexed:
        summary = record["summary"]
        cells = [_cell(summary["n"], None, ("runs", index, "summary", "n"))]
        cells += [_cell(summary.get(key), summary.get(f"{key}_ci"), ("runs", index, "summary", key))
                  for key, _ in shown]
        for key, _ in published:
            cells += _published_cells(record, index, key)
        rows.append({"record": record, "cells": cells})
        order = [name for name in names("all") if name in summary["errors"]]
        order += [name for name in summary["errors"] if name not in order]
        grids.append({"record": record, "rows": [
            {"name": name, "cells": [{**_cell(error, None, ("runs", index, "summary", "errors", name, severity)),
                                      "shade": _shade(error)}
                                     for severity, error in enumerate(summary["errors"][name])]}
            for name in order]})
    headers = ["n", *[label for _, label in shown]]
    for _, label in published:
        headers += [f"{label}, published", "Δ ours − published"]
    return {"headers": headers, "rows": rows, "grids": grids}


def _attack_section(indexed: list[tuple[int, Mapping]]) -> dict:
    """A row per run and attack (and the worst case), ε as columns."""
    levels = sorted({level for _, r in indexed for by in [*r["summary"]["robust_accuracy"].values(),
                                                          r["summary"]["worst_case"]] for level in by
                     if epsilon_value(level)}, key=epsilon_value)
    rows = []
    for index, record in indexed:
        summary = record["summary"]
        blocks = [(attack, ("robust_accuracy", attack), summary["robust_accuracy"][attack],
                   summary.get("robust_accuracy_ci", {}).get(attack, {})) for attack in summary["robust_accuracy"]]
        if len(blocks) > 1:
            blocks.append(("worst case", ("worst_case",), summary["worst_case"], summary.get("worst_case_ci", {})))
        for attack, path, values, intervals in blocks:
            cells = [_cell(summary["n"], None, ("runs", index, "summary", "n")),
                     _cell(summary["clean_accuracy"], summary.get("clean_accuracy_ci"),
                           ("runs", index, "summary", "clean_accuracy")),
                     *_published_cells(record, index, "clean_accuracy")]
            cells += [_cell(values.get(level), intervals.get(level), ("runs", index, "summary", *path, level))
                      for level in levels]
            rows.append({"record": record, "attack": attack, "cells": cells})
    headers = ["n", "clean accuracy (%)", "clean, published", "Δ ours − published", *[f"ε {lv}" for lv in levels]]
    return {"headers": headers, "rows": rows}


def _perturbation_section(indexed: list[tuple[int, Mapping]]) -> dict:
    """Flip probability (%) and top-5 distance per perturbation and difficulty; mFR and mT5D."""
    levels = sorted({d for _, r in indexed for by in r["summary"]["flip_probability"].values() for d in by}, key=int)
    rows, summary_rows = [], []
    for index, record in indexed:
        summary = record["summary"]
        order = [p for p in ORDER if p in summary["flip_probability"]]
        for name in order:
            cells = [_cell(summary["flip_probability"][name].get(d), None,
                           ("runs", index, "summary", "flip_probability", name, d), 100) for d in levels]
            cells += [_cell(summary["top5_distance"][name].get(d), None,
                            ("runs", index, "summary", "top5_distance", name, d)) for d in levels]
            rows.append({"record": record, "perturbation": name, "cells": cells})
        cells = [_cell(summary["videos"], None, ("runs", index, "summary", "videos"))]
        cells += [_cell(summary["mean_flip_probability"].get(d), None,
                        ("runs", index, "summary", "mean_flip_probability", d), 100) for d in levels]
        for key in ("mFR", "mT5D"):
            cells += [_cell(summary.get(key), None, ("runs", index, "summary", key)),
                      *_published_cells(record, index, key)]
        summary_rows.append({"record": record, "cells": cells})
    return {
        "headers": [*[f"FP d={d} (%)" for d in levels], *[f"T5D d={d}" for d in levels]],
        "summary_headers": ["videos", *[f"mean FP d={d} (%)" for d in levels], "mFR", "mFR, published",
                            "Δ ours − published", "mT5D", "mT5D, published", "Δ ours − published"],
        "rows": rows, "summary_rows": summary_rows,
    }


def _shift_section(indexed: list[tuple[int, Mapping]]) -> dict:
    """Per run: its shifted set, the clean and shifted errors and the effective robustness."""
    metrics = ("clean_error", "top1_error", "top5_error", "effective_robustness")
    rows = [{"record": record, "shift": record["summary"]["shift"], "note": record["summary"]["trend"],
             "cells": [_cell(record["summary"]["n"], None, ("runs", index, "summary", "n")),
                       *[_cell(record["summary"].get(key), record["summary"].get(f"{key}_ci"),
                               ("runs", index, "summary", key)) for key in metrics]]}
            for index, record in indexed]
    return {"headers": ["n", "clean top-1 error (%)", "top-1 error (%)", "top-5 error (%)",
                        "effective robustness (points)"], "rows": rows,
            "notes": list(dict.fromkeys(row["note"] for row in rows if row["note"]))}


SECTIONS = {"corruption": _corruption_section, "attack": _attack_section, "perturbation": _perturbation_section,
            "shift": _shift_section}


def _pairs(data: Mapping) -> list[dict]:
    by_id = {r["id"]: r for r in data["runs"]}
    found = []
    for index, pair in enumerate(data["pairs"]):
        rows = [{"metric": d["metric"], "significant": d["significant"],
                 "cells": [_cell(d["gap"], None, ("pairs", index, "differences", i, "gap")),
                           _cell(d["gcp"], None, ("pairs", index, "differences", i, "gcp")),
                           _cell(d["difference"], d["interval"], ("pairs", index, "differences", i, "difference")),
                           _cell(d["p_value"], None, ("pairs", index, "differences", i, "p_value"))]}
                for i, d in enumerate(pair["differences"])]
        found.append({"gap": by_id[pair["gap"]], "gcp": by_id[pair["gcp"]], "note": pair["note"], "rows": rows})
    return found


def _template_environment() -> Environment:
    environment = Environment(loader=PackageLoader("robustbench_gcp.report", "templates"),
                              autoescape=select_autoescape(["html", "j2"]), undefined=StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)
    environment.filters["record_json"] = lambda value: json.dumps(value, indent=None, sort_keys=True).replace(
        "</", "<\\/")
    return environment


def render_report(data: Mapping, store: ResultStore, chosen: Mapping[str, Sequence[Run]]) -> str:
    """The page of ``data`` (``report_data`` of the ``chosen`` runs of ``store``)."""
    sections = {}
    for kind, build in SECTIONS.items():
        indexed = [(i, r) for i, r in enumerate(data["runs"]) if r["kind"] == kind]
        if indexed:
            sections[kind] = {**build(indexed),
                              "figure": _svg(FIGURES[kind], store, chosen[kind]) if kind in FIGURES else None}
    return _template_environment().get_template("report.html.j2").render(
        data=data, sections=sections, pairs=_pairs(data))


def write_report(data: Mapping, store: ResultStore, chosen: Mapping[str, Sequence[Run]], out: str | Path) -> Path:
    """Render and write the page atomically (a full disk leaves no half page)."""
    out = report_path(out)
    atomic_write_text(out, render_report(data, store, chosen))
    return out
