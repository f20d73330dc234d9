"""Stored runs in RobustBench's ``model_info`` layout, so our numbers can be compared with, or
submitted to, its leaderboards.

RobustBench keeps one JSON file per model and threat model, ``model_info/<dataset>/<threat>/<name>.json``
(threat: ``Linf``, ``L2`` or ``corruptions``), with the accuracies as strings of two decimals. An
attack run becomes a Linf/L2 entry per ε when it holds the standard AutoAttack cascade (its last
stage is the version's robust accuracy); a corruption run becomes a ``corruptions`` entry when it
holds all 15 corruptions at all five severities (the mean accuracy over the 75 cells).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..attacks import epsilon_value
from ..attacks.autoattack import QUERIES, stages
from ..corruptions import names
from ..fileio import atomic_write_text, check_output_file
from ..models.registry import UnknownModelError, architecture_info
from ..models.zoo import checkpoint_record
from ..results import ResultStore, Run
from ..summaries import is_imagenet_run, summarize
from ..version import __version__
from .runs import ReportError

# The fields of a RobustBench model_info file and their types (None allowed where noted).
FIELDS: dict[str, tuple[type, ...]] = {
    "link": (str,), "name": (str,), "authors": (str,), "additional_data": (bool,),
    "number_forward_passes": (int,), "dataset": (str,), "venue": (str,), "architecture": (str,),
    "eps": (str, type(None)), "clean_acc": (str,), "reported": (str,), "footnote": (str,),
}
ATTACK_FIELD, CORRUPTION_FIELD = "autoattack_acc", "corruptions_acc"
THREATS = {"linf": "Linf", "l2": "L2"}
# The leaderboards' ε; another ε is written too, with the ε in the file name.
LEADERBOARD_EPS = {("cifar10", "Linf"): "8/255", ("cifar10", "L2"): "0.5", ("imagenet", "Linf"): "4/255"}
VERSION = "autoattack"  # the standard version, the one RobustBench reports


@dataclass
class Export:
    """What ``export_robustbench`` wrote, and which runs it left out and why."""

    written: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def check_model_info(entry: Mapping, path: str = "entry") -> None:
    """An entry has exactly RobustBench's fields plus one accuracy field, of the right types."""
    accuracy = [key for key in (ATTACK_FIELD, CORRUPTION_FIELD) if key in entry]
    expected = set(FIELDS) | set(accuracy)
    if len(accuracy) != 1 or set(entry) != expected:
        raise ReportError(f"{path}: fields {sorted(entry)} are not RobustBench's ({sorted(FIELDS)} and one of "
                          f"{ATTACK_FIELD}, {CORRUPTION_FIELD})")
    for key, types in {**FIELDS, accuracy[0]: (str,)}.items():
        if not isinstance(entry[key], types) or (types == (int,) and isinstance(entry[key], bool)):
            raise ReportError(f"{path}: field {key!r} is {type(entry[key]).__name__}, not {types[0].__name__}")


def _dataset(run: Run) -> str:
    return "imagenet" if is_imagenet_run(run) else "cifar10"


def _architecture(model: str) -> str:
    record = checkpoint_record(model)
    try:
        return architecture_info(record.architecture if record else model).name
    except UnknownModelError:
        return model


def _entry(run: Run, eps: str | None, clean: float, accuracy: tuple[str, float], note: str) -> dict:
    entry = {
        "link": "", "name": run.name or run.model, "authors": "", "additional_data": False,
        "number_forward_passes": 1, "dataset": _dataset(run), "venue": "", "architecture": _architecture(run.model),
        "eps": eps, "clean_acc": f"{clean:.2f}", "reported": "",
        "footnote": f"measured by gcp-robust {__version__} (run {run.id}, {note}); "
                    f"checkpoint SHA-256 {run.config.get('checkpoint_sha256') or 'none (random weights)'}",
        accuracy[0]: f"{accuracy[1]:.2f}",
    }
    check_model_info(entry)
    return entry


def _stem(run: Run) -> str:
    """A file name from the run's --name or model: letters, digits, ``.``, ``-`` and ``_`` only."""
    return re.sub(r"[^\w.-]+", "_", run.name or run.model)


def _images(run: Run, summary: Mapping) -> str:
    return f"{summary['n']} of {run.config.get('dataset_size')} images"


def _cascade(config: Mapping) -> str:
    """The AutoAttack settings, flagged where they are not the standard version's."""
    changed = [f"--{key} {config[key]}" for key, default in (("steps", None), ("queries", QUERIES), ("restarts", 1))
               if config.get(key, default) != default]
    return "standard AutoAttack" if not changed else f"AutoAttack's cascade with {', '.join(changed)} (not standard)"


def _attack_entries(run: Run, summary: Mapping) -> tuple[list[tuple[str, str, dict]], str | None]:
    last = stages(VERSION)[-1][0]
    if last not in summary["robust_accuracy"]:
        return [], f"run {run.id} ({run.model}): no standard AutoAttack ({VERSION}), which RobustBench reports"
    threat = THREATS[run.config.get("norm", "linf")]
    found = []
    for eps, accuracy in summary["robust_accuracy"][last].items():
        if not epsilon_value(eps) or accuracy is None:
            continue
        standard = LEADERBOARD_EPS.get((_dataset(run), threat)) == eps
        stem = _stem(run) + ("" if standard else f"_eps_{eps.replace('/', '_')}")
        entry = _entry(run, eps, summary["clean_accuracy"], (ATTACK_FIELD, accuracy),
                       f"{_cascade(run.config)}, {_images(run, summary)}")
        found.append((threat, stem, entry))
    return found, None


def _corruption_entries(run: Run, summary: Mapping) -> tuple[list[tuple[str, str, dict]], str | None]:
    errors = summary["errors"]
    common = names("common")
    if not all(name in errors and None not in errors[name] and len(errors[name]) == 5 for name in common):
        return [], f"run {run.id} ({run.model}): not all 15 corruptions at all five severities"
    mean_error = sum(sum(errors[name]) for name in common) / (5 * len(common))
    protocol = run.config.get("protocol") or run.config.get("source")
    entry = _entry(run, None, 100 - summary["clean_error"], (CORRUPTION_FIELD, 100 - mean_error),
                   f"{protocol}, {_images(run, summary)}")
    return [("corruptions", _stem(run), entry)], None


def export_robustbench(store: ResultStore, runs: Sequence[Run], out: str | Path) -> Export:
    """One model_info file per run and threat model under ``out``; runs that cannot give one are
    listed in ``skipped`` with the reason."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out} is a file; pass a directory for the model_info files")
    check_output_file(out / "model_info.json", "--out")  # writable, before anything is computed
    result = Export()
    builders = {"attack": _attack_entries, "corruption": _corruption_entries}
    for run in runs:
        if run.kind not in builders:
            result.skipped.append(f"run {run.id} ({run.model}): RobustBench has no leaderboard of {run.kind} runs")
            continue
        entries, reason = builders[run.kind](run, summarize(run, store.cells(run), None))
        if reason:
            result.skipped.append(reason)
        for threat, stem, entry in entries:
            path = out / entry["dataset"] / threat / f"{stem}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(entry, indent=2) + "\n")
            result.written.append(path)
    return result
