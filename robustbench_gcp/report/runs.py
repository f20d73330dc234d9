"""Which stored runs a report shows, in which order, and the names that tell them apart."""

from __future__ import annotations

from collections.abc import Sequence

from ..attacks.autoattack import QUERIES, VERSIONS
from ..attacks.registry import ATTACKS
from ..errors import Error
from ..models.registry import UnknownModelError, architecture_info
from ..models.zoo import checkpoint_record
from ..results import ResultStore, Run
from ..summaries import is_imagenet_run


class ReportError(Error, ValueError):
    """Nothing to report, or nowhere to write it."""


def column_order(run: Run) -> tuple:
    """GAP next to GCP: sort by architecture family and depth, then head, then run id."""
    record = checkpoint_record(run.model)
    try:
        info = architecture_info(record.architecture if record else run.model)
        base = info.name.rsplit("_", 1)[0]
        return (info.family, base, info.head, run.model, run.id)
    except UnknownModelError:
        return ("~", run.model, "", run.model, run.id)


def select_runs(store: ResultStore, kind: str, *, models: Sequence[str] | None = None,
                selectors: Sequence[str] | None = None, latest: bool = False) -> list[Run]:
    """Runs of ``kind``: those named by id or --name (``selectors``), else all (of ``models``);
    ``latest`` keeps the newest run of each model. GAP next to GCP."""
    if selectors:
        runs = {r.id: r for s in selectors for r in store.find(s) if r.kind == kind}.values()
        runs = [r for r in runs if not models or r.model in models]
    else:
        runs = store.runs(kind, list(models) if models else None)
    if latest:
        newest = {r.model: r for r in sorted(runs, key=lambda r: r.id)}
        runs = list(newest.values())
    return sorted(runs, key=column_order)


def twins(gap: Run, gcp: Run) -> bool:
    """A GAP run and a GCP run of the same backbone (the paper's pairs)."""
    first, second = column_order(gap), column_order(gcp)
    return first[:2] == second[:2] and first[0] != "~" and (first[2], second[2]) == ("gap", "gcp")


def _default_steps(attacks: Sequence[str]) -> str:
    """What each attack's own default is (PGD's 40 steps, AutoAttack's schedule), so runs of
    different defaults never share one label."""
    parts = []
    for name in attacks:
        spec, version = ATTACKS.get(name), name.split("/", 1)[0]
        if version in VERSIONS:
            parts.append(f"{version} schedule")
        elif spec is not None:
            parts.append(f"{spec.default_steps} steps" if spec.default_steps else "1 step")
    return ", ".join(dict.fromkeys(parts)) or "default steps"


def _attack_parameters(config: dict, attacks: Sequence[str]) -> str:
    steps, rel = config.get("steps"), config.get("rel_stepsize")
    if steps is None and rel is None:
        text = _default_steps(attacks)
    elif rel is None:
        text = f"{steps}×{2.5 / steps:.3g}" if steps else f"{steps} steps"
    else:
        text = f"{'default' if steps is None else steps}×{rel:g}"
    if config.get("restarts", 1) > 1:
        text += f"×{config['restarts']} restarts"
    if config.get("norm", "linf") != "linf":  # the AutoAttack attacks' threat model
        text += f" · {config['norm']}"
    if config.get("queries", QUERIES) != QUERIES:
        text += f" · {config['queries']} queries"
    return text


def run_label(run: Run, attacks: Sequence[str] = ()) -> str:
    """What distinguishes a run, short and stable: its --name, or model · protocol or attack
    parameters · subset size · seed · precision. ``attacks``: the attack run's stored attacks,
    whose defaults name its steps when none were given."""
    if run.name:
        return run.name
    config = run.config
    parts = [run.model]
    if run.kind in ("corruption", "perturbation", "shift"):
        parts.append(config.get("protocol") or config.get("shift") or config.get("source") or "")
    else:
        parts.append(_attack_parameters(config, attacks))
        if config.get("backend") in ("foolbox", "reference"):
            parts.append(config["backend"])
    if config.get("limit"):
        parts.append(f"n={config['limit']}")
    if config.get("seed"):
        parts.append(f"seed {config['seed']}")
    if config.get("precision") == "bf16":
        parts.append("bf16")
    return " · ".join(p for p in parts if p)


def run_labels(runs: Sequence[Run], attacks: Sequence[Sequence[str]] | None = None) -> list[str]:
    """Labels of ``runs`` (``attacks``: each run's stored attacks); runs that would share one get
    their id appended."""
    labels = [run_label(r, a) for r, a in zip(runs, attacks or [()] * len(runs))]
    return [f"{label} #{r.id}" if labels.count(label) > 1 else label for label, r in zip(labels, runs)]


def imagenet_metrics(runs: Sequence[Run]) -> bool:
    """CE and mCE are normalised by AlexNet's ImageNet-C errors: shown only for ImageNet-sized runs."""
    return any(is_imagenet_run(r) for r in runs)
