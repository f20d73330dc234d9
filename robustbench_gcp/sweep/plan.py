"""A sweep as work units: (model, evaluation, group of cells, image shard), each small enough.

A unit is what one job runs: one existing evaluation, in process, on some of its cells and,
for the chunked evaluations (corruption, perturbation), one block of its images. A unit whose
estimate exceeds ``max_minutes`` is split, first into groups of cells, then into image shards;
attacks split into groups of ε, and an AutoAttack cascade stays one unit (each stage starts
from the cells of the stage before it). A unit's id is a hash of what it computes (model,
checkpoint path, data, options, cells, shard), never of how (batch size, workers), so a
replanned sweep finds its finished work.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from ..attacks import parse_epsilons
from ..attacks.autoattack import is_autoattack
from ..corruptions import benchmark_names
from ..corruptions import names as corruption_names
from ..errors import Error
from ..evaluate.attack import AttackEvalConfig
from ..evaluate.attack import check_config as check_attack_config
from ..evaluate.corruption import CorruptionEvalConfig
from ..evaluate.corruption import check_config as check_corruption_config
from ..evaluate.perturbation import PerturbationEvalConfig
from ..evaluate.perturbation import check_config as check_perturbation_config
from ..models.registry import architecture_info
from ..perturbations import PROTOCOLS, sequence_length, sequence_level
from ..perturbations import names as perturbation_names
from ..perturbations import spec as protocol_spec
from .cost import ON_THE_FLY, RELEASED, attack_passes, images_per_second, pipeline_seconds
from .spec import PATH_OPTIONS, EvaluationSpec, ModelSpec, Sweep, SweepError

ASSUMED_IMAGES = {224: 50000, 32: 10000}  # the validation / test set, when no limit says otherwise


@dataclass(frozen=True)
class WorkUnit:
    """One job's work; ``options`` are the evaluation's keyword arguments (JSON values)."""

    id: str
    kind: str
    model: str
    checkpoint: str | None
    num_classes: int | None
    data: str
    options: dict
    cells: list[str]  # corruptions, attacks or perturbations
    shard: list[int] | None  # [k, n]
    images: int
    minutes: float

    def config(self, db: Path):
        """The evaluation's configuration, writing to ``db``."""
        common = dict(model=self.model, data=Path(self.data), num_classes=self.num_classes, db=db,
                      checkpoint=Path(self.checkpoint) if self.checkpoint else None,
                      **_paths(self.options))
        shard = tuple(self.shard) if self.shard else None
        if self.kind == "corruption":
            return CorruptionEvalConfig(corruptions=self.cells, shard=shard, **common)
        if self.kind == "perturbation":
            return PerturbationEvalConfig(perturbations=self.cells, shard=shard, **common)
        eps = parse_epsilons(common.pop("eps"), "l2")  # the loosest bound: the evaluation checks its norm
        return AttackEvalConfig(attacks=self.cells, eps=eps, **common)

    def as_dict(self) -> dict:
        return asdict(self)


def plan(sweep: Sweep, max_minutes: float = 60.0, device_kind: str = "h200") -> list[WorkUnit]:
    """Every unit of the sweep, in the file's order (models outer, evaluations inner)."""
    if not max_minutes > 0:
        raise SweepError(f"--max-unit-minutes {max_minutes:g}: pass a positive number of minutes")
    return [unit for model in sweep.models for evaluation in sweep.evaluations
            for unit in _units(model, evaluation, max_minutes, device_kind)]


def _units(model: ModelSpec, evaluation: EvaluationSpec, max_minutes: float, device_kind: str) -> list[WorkUnit]:
    least_shards = evaluation.options.get("shards", 1)  # image shards asked for, whatever the estimate
    if not isinstance(least_shards, int) or isinstance(least_shards, bool) or least_shards < 1:
        raise SweepError(f"{evaluation.kind} evaluation: shards = {least_shards!r}; pass a positive integer")
    options, cells = _options(model, {**evaluation.options}, evaluation)
    rate = images_per_second(model.architecture, device_kind, options.get("precision", "bf16")) * 60
    images = options.get("limit") or ASSUMED_IMAGES.get(architecture_info(model.architecture).input_size, 50000)
    protocol = _perturbation_protocol(model, options) if evaluation.kind == "perturbation" else None
    per_cell = {cell: _minutes(evaluation.kind, cell, options, protocol, images, rate, device_kind) for cell in cells}

    def unit(group: list[str], unit_options: dict, shard: list[int] | None, minutes: float) -> WorkUnit:
        what = {"kind": evaluation.kind, "model": model.model, "checkpoint": str(model.checkpoint or ""),
                "num_classes": model.num_classes, "data": str(evaluation.data),
                "options": {k: v for k, v in unit_options.items() if k not in ("batch_size", "workers")},
                "cells": group, "shard": shard}
        digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]
        return WorkUnit(digest, evaluation.kind, model.model, str(model.checkpoint) if model.checkpoint else None,
                        model.num_classes, str(evaluation.data), unit_options, group, shard, images, minutes)

    if evaluation.kind == "attack":
        budgets = options["eps"]
        return [unit([attack], {**options, "eps": ",".join(eps)}, None, per_cell[attack] * len(eps) / len(budgets))
                for attack in cells for eps in _eps_groups(attack, budgets, per_cell[attack], max_minutes)]
    units = []
    for group in _groups(cells, per_cell, max_minutes):
        minutes = sum(per_cell[c] for c in group)
        shards = max(least_shards, math.ceil(minutes / max_minutes))
        units += [unit(group, options, [k, shards] if shards > 1 else None, minutes / shards) for k in range(shards)]
    return units


def _options(model: ModelSpec, given: dict, evaluation: EvaluationSpec) -> tuple[dict, list[str]]:
    """The evaluation's options as the config takes them (checked like the eval-* commands
    check them), and its cells: corruptions, attacks or perturbations."""
    given.pop("shards", None)
    options = {**given, **evaluation.settings}
    kind = evaluation.kind
    try:
        if kind == "corruption":
            chosen = options.pop("corruptions", None)  # by default the protocol's set (common; a C-bar protocol's 10)
            cells = benchmark_names(options.get("protocol")) if chosen is None else \
                corruption_names(chosen) if isinstance(chosen, str) else list(chosen)
            options["severities"] = list(options.get("severities", [1, 2, 3, 4, 5]))
            check_corruption_config(CorruptionEvalConfig(model.model, evaluation.data, corruptions=cells,
                                                         **_paths(options)))
        elif kind == "attack":
            cells = _listed(options.pop("attacks"))
            eps = options["eps"]
            options["eps"] = [str(e) for e in eps] if isinstance(eps, list) else _listed(eps)
            norm = options.get("norm", "linf")
            check_attack_config(AttackEvalConfig(model.model, evaluation.data, cells,
                                                 parse_epsilons(",".join(options["eps"]), "l2"),
                                                 **_paths({k: v for k, v in options.items() if k != "eps"})))
            options["norm"] = norm
        else:
            protocol = _perturbation_protocol(model, options)
            chosen = options.pop("perturbations", "test")
            cells = perturbation_names(chosen, protocol) if isinstance(chosen, str) else list(chosen)
            options["difficulties"] = list(options.get("difficulties", [1]))
            check_perturbation_config(PerturbationEvalConfig(model.model, evaluation.data, perturbations=cells,
                                                             **_paths(options)))
    except SweepError:
        raise
    except (Error, TypeError) as error:
        raise SweepError(f"{evaluation.kind} evaluation of {model.model}: {error}") from None
    return options, cells


def _paths(options: dict) -> dict:
    """The options with their file paths as Paths (JSON keeps them as strings)."""
    return {k: (Path(v) if k in PATH_OPTIONS else v) for k, v in options.items()}


def _listed(value) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [part.strip() for part in str(value).split(",") if part.strip()]


def _perturbation_protocol(model: ModelSpec, options: dict) -> str:
    source = options.get("source", "generated")
    protocol = options.get("protocol") or (source if source != "generated" else None)
    size = architecture_info(model.architecture).input_size
    return protocol or next((p for p in PROTOCOLS if protocol_spec(p).size == size), "imagenet-p")


def _minutes(kind: str, cell: str, options: dict, protocol: str | None, images: int, rate: float,
             device_kind: str) -> float:
    """Estimated minutes of one corruption (all its severities), perturbation or attack."""
    if kind == "attack":
        passes = attack_passes(cell, len(options["eps"]), options.get("steps"), options.get("restarts", 1),
                               options.get("queries", 5000))
        return images * passes / rate
    on_the_fly = options.get("source", "generated") == "generated"
    if kind == "corruption":
        frames = len(options["severities"])
    else:
        frames = len({sequence_level(cell, d) for d in options["difficulties"]}) * sequence_length(cell, protocol)
    model = images * frames / ((ON_THE_FLY if on_the_fly else RELEASED) * rate)
    return max(model, pipeline_seconds(images * frames, device_kind, on_the_fly) / 60)


def _groups(cells: list[str], minutes: dict[str, float], max_minutes: float) -> list[list[str]]:
    """Consecutive cells packed into groups of at most ``max_minutes`` (a longer cell alone)."""
    groups: list[list[str]] = []
    total = 0.0
    for cell in cells:
        if groups and total + minutes[cell] <= max_minutes:
            groups[-1].append(cell)
            total += minutes[cell]
        else:
            groups.append([cell])
            total = minutes[cell]
    return groups


def _eps_groups(attack: str, eps: list[str], minutes: float, max_minutes: float) -> list[list[str]]:
    """An attack's budgets split so that each group fits (a cascade keeps all of them)."""
    if is_autoattack(attack) or minutes <= max_minutes:
        return [eps]
    count = min(len(eps), math.ceil(minutes / max_minutes))
    return [eps[k * len(eps) // count : (k + 1) * len(eps) // count] for k in range(count)]


def find_unit(units: list[WorkUnit], unit_id: str) -> WorkUnit:
    found = [u for u in units if u.id == unit_id]
    if not found:
        raise SweepError(f"no unit {unit_id} in this sweep's plan")
    return found[0]
