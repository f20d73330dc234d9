"""The attack evaluation: robust accuracy per (attack, ε) and the worst case over attacks.

A sample is robust at ε when it is classified correctly and survives the attack; the worst case
counts it only when it survives every attack of the run. Each (attack, ε) cell stores its counts
and the per-sample robust flags (so the worst case can be formed later), as soon as the attack
is done for all its pending ε; rerunning skips finished cells. Native attacks draw each
(image, ε) random start from its own seed, so a cell does not depend on the other ε of a sweep.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..attacks import AttackSettings, Epsilon, attack_spec, check_attack, check_epsilons, run_attack
from ..attacks.autoattack import (
    QUERIES,
    AutoAttackError,
    AutoAttackSettings,
    Component,
    check_classes,
    check_reference_installed,
    is_autoattack,
    run_component,
    run_reference,
    stages,
)
from ..attacks.rows import logits_function
from ..data.batches import ImageBatches
from ..devices import effective_precision, prepare, to_float_images
from ..distributed import DistContext, barrier, broadcast, gather_flags, init_distributed, sum_counts
from ..models.zoo import file_sha256
from ..progress import Progress, progress_bar
from ..results import DEFAULT_DB, Cell, write_json
from ..rng import ImageStreams, batch_seed, image_streams
from ..summaries import CLEAN, pack_flags, summarize_attacks, unpack_flags
from ..version import __version__
from .attack_report import Flag, model_flags, run_flags
from .common import (
    DEFAULT_WORKERS,
    EvaluationError,
    check_run_options,
    count_cell,
    data_identity,
    load_eval_model,
    open_checked_source,
    open_store,
    selected_indices,
    start_run,
)


@dataclass
class AttackEvalConfig:
    """Everything ``gcp-robust eval-attack`` takes."""

    model: str
    data: Path
    attacks: Sequence[str]
    eps: Sequence[Epsilon]  # e.g. parse_epsilons("0,1/255,2/255")
    checkpoint: Path | None = None
    num_classes: int | None = None
    steps: int | None = None
    restarts: int = 1
    rel_stepsize: float | None = None
    backend: str = "native"
    norm: str = "linf"  # of the AutoAttack attacks (the others carry theirs in their names)
    queries: int = QUERIES  # Square's queries
    precision: str = "fp32"  # bf16: native attacks under bf16 autocast, on CUDA only
    limit: int | None = None
    seed: int = 0
    batch_size: int = 128
    workers: int = DEFAULT_WORKERS
    device: str | None = None
    strict: bool = False
    class_index: Path | None = None
    db: Path = DEFAULT_DB
    json: Path | None = None
    name: str | None = None  # a label for tables and --run; not part of the run's identity


def _check(config: AttackEvalConfig) -> list[Epsilon]:
    if not config.attacks:
        raise EvaluationError("--attacks selects no attack; pass e.g. linf-pgd,fgsm")
    for name in config.attacks:
        check_attack(name)
    if len(set(config.attacks)) != len(config.attacks):
        raise EvaluationError(f"--attacks names an attack twice: {','.join(config.attacks)}")
    if any(is_autoattack(name) for name in config.attacks):
        if config.backend == "foolbox":
            raise AutoAttackError("AutoAttack's attacks have no foolbox version: use --backend native (default) or "
                                  "--backend reference (the pyautoattack package)")
        if config.backend == "reference":
            check_reference_installed()
        _autoattack_settings(config).check()
    eps = [Epsilon(*e) for e in config.eps]
    check_epsilons(eps)
    settings = AttackSettings(steps=config.steps, restarts=config.restarts, rel_stepsize=config.rel_stepsize,
                              backend=config.backend)
    settings.check()
    for name in (n for n in config.attacks if not is_autoattack(n)):
        reach = settings.short_reach(attack_spec(name)) if config.rel_stepsize is not None else None
        if reach is not None:
            warnings.warn(f"{name}: --steps {settings.steps_of(attack_spec(name))} × --rel-stepsize "
                          f"{config.rel_stepsize:g} = {reach:.2f}: the attack travels at most {reach:.2f} ε from its "
                          "start, so it can stay far inside the ε-ball and overstate robustness; leave out "
                          "--rel-stepsize for 2.5 / steps", stacklevel=3)
    check_run_options(limit=config.limit, batch_size=config.batch_size, workers=config.workers,
                      num_classes=config.num_classes, precision=config.precision, json=config.json)
    return sorted(eps, key=lambda e: e.value)


def _autoattack_settings(config: AttackEvalConfig) -> AutoAttackSettings:
    return AutoAttackSettings(norm=config.norm, steps=config.steps, queries=config.queries)


def start_streams(seed: int, attack: str, eps: Sequence[Epsilon], index: Tensor,
                  device: torch.device) -> ImageStreams:
    """One stream per (ε, image), ε-major, keyed by (run seed, image, attack, ε value)."""
    return ImageStreams.cat([image_streams(seed, index, f"{attack}@{e.value!r}", 0, device) for e in eps])


class _AttackRunner:
    def __init__(self, config: AttackEvalConfig, model: nn.Module, dataset, indices: list[int], ctx: DistContext,
                 precision: str):
        self.config, self.model, self.dataset, self.ctx = config, model, dataset, ctx
        self.indices = indices
        self.position = {index: p for p, index in enumerate(indices)}
        self.settings = AttackSettings(
            steps=config.steps, restarts=config.restarts, rel_stepsize=config.rel_stepsize, backend=config.backend,
            autocast=precision == "bf16",
        )

    def _batches(self, indices: list[int] | None = None) -> ImageBatches:
        c = self.config
        return ImageBatches(self.dataset, self.indices if indices is None else indices, c.batch_size, c.workers,
                            self.ctx, c.strict)

    def model_checks(self) -> tuple[list[Flag], int]:
        """The model checks on the first batch (each rank on its share; rank 0's are reported) and
        the number of classes the model outputs (rank 0's)."""
        flags, classes = [], None
        for images, labels, _ in self._batches(self.indices[:self.config.batch_size]):
            images = to_float_images(images, self.ctx.device)
            flags += model_flags(self.model, images, labels)
            with torch.no_grad():
                classes = self.model(images[:1]).shape[1]
        return flags, broadcast(classes, self.ctx)

    def autoattack_stage(self, cell: str, component: Component, eps: list[Epsilon], prior: np.ndarray,
                         bar: Progress) -> list[Cell]:
        """One stage of an AutoAttack cascade at the pending ``eps``: it attacks, from the clean
        image, the (image, ε) rows that ``prior`` (flags (E, positions): the clean cell's for the
        first stage, else the stage before's) left robust, and returns the cells of the samples
        still robust after it. Top-5 errors count the image the stage classified last (the clean
        one where it did not attack): unlike top-1, they are not cumulative over the stages."""
        c, device = self.config, self.ctx.device
        logits = logits_function(self.model, self.settings.autocast)
        radii = torch.tensor([e.value for e in eps], device=device)
        aa_settings = _autoattack_settings(c)
        robust_flags: dict[int, np.ndarray] = {}
        counts = np.zeros((len(eps), 3), dtype=np.int64)  # n, top-1 errors, top-5 errors
        batches = self._batches()
        for images, labels, index in batches:
            images, n = to_float_images(images, device), len(labels)
            with torch.no_grad():
                top = _top5(logits(images))
            top5_hit = (top == labels[:, None]).any(1).repeat(len(eps), 1)  # (E, N)
            alive = torch.from_numpy(prior[:, [self.position[int(i)] for i in index]]).to(device)
            eps_of, image_of = (alive & (radii[:, None] > 0)).nonzero(as_tuple=True)
            if len(eps_of):
                adversarial = self._attack_rows(component, cell, images[image_of], labels[image_of],
                                                radii[eps_of], start_streams(c.seed, cell, eps, index, device)[
                                                    eps_of * n + image_of], int(index[0]), logits, aa_settings)
                with torch.no_grad():
                    top = _top5(logits(adversarial))
                alive[eps_of, image_of] = top[:, 0] == labels[image_of]
                top5_hit[eps_of, image_of] = (top == labels[image_of, None]).any(1)
            counts[:, 0] += n
            counts[:, 1] += (~alive).sum(1).cpu().numpy()
            counts[:, 2] += (~top5_hit).sum(1).cpu().numpy()
            flags = alive.cpu().numpy()
            robust_flags.update({self.position[int(i)]: flags[:, k] for k, i in enumerate(index)})
            bar.update(n * len(eps) * self.ctx.world)
        return self._cells(cell, eps, counts, batches, robust_flags)

    def _attack_rows(self, component: Component, cell: str, images: Tensor, labels: Tensor,
                     radii: Tensor, streams: ImageStreams, first_index: int, logits, aa_settings) -> Tensor:
        if self.config.backend == "reference":
            return run_reference(component, self.model, images, labels, radii,
                                 lambda radius: batch_seed(self.config.seed, f"{cell}@{radius!r}", first_index),
                                 aa_settings)
        return run_component(component, logits, images, labels, radii, streams, aa_settings)

    def _cells(self, name: str, eps: list[Epsilon], counts: np.ndarray, batches: ImageBatches,
               robust_flags: dict[int, np.ndarray]) -> list[Cell]:
        totals = np.array([sum_counts(row.tolist(), self.ctx) for row in counts])
        skipped = sum_counts([batches.skipped], self.ctx)[0]
        flags = gather_flags(robust_flags, len(self.indices), len(eps), self.ctx)
        return [
            Cell(name, text, int(n), int(top1), int(top5), skipped, mask=pack_flags(flags[k]))
            for k, ((text, _), (n, top1, top5)) in enumerate(zip(eps, totals))
        ]

    def clean(self, bar: Progress) -> Cell:
        with torch.no_grad():
            return count_cell(*CLEAN, self._batches(), lambda images, _: self.model(images), self.position, self.ctx,
                              bar)

    def attack(self, name: str, eps: list[Epsilon], bar: Progress) -> list[Cell]:
        values = [e.value for e in eps]
        robust_flags: dict[int, np.ndarray] = {}
        counts = np.zeros((len(eps), 3), dtype=np.int64)  # n, top-1 errors, top-5 errors
        batches = self._batches()
        for images, labels, index in batches:
            images = to_float_images(images, self.ctx.device)
            streams = start_streams(self.config.seed, name, eps, index, self.ctx.device)
            torch.manual_seed(batch_seed(self.config.seed, name, int(index[0])))  # foolbox draws from the global RNG
            adversarial = run_attack(name, self.model, images, labels, values, self.settings, streams)
            with torch.no_grad():
                clean_correct = self.model(images).argmax(1) == labels
                logits = self.model(adversarial.flatten(0, 1)).float().view(len(values), len(labels), -1)
            top = logits.topk(min(5, logits.shape[-1]), dim=-1).indices
            robust = (top[..., 0] == labels) & clean_correct
            counts[:, 0] += len(labels)
            counts[:, 1] += (~robust).sum(1).cpu().numpy()
            counts[:, 2] += (~(top == labels[:, None]).any(-1)).sum(1).cpu().numpy()
            robust = robust.cpu().numpy()
            robust_flags.update({self.position[int(i)]: robust[:, k] for k, i in enumerate(index)})
            bar.update(len(labels) * len(values) * self.ctx.world)
        return self._cells(name, eps, counts, batches, robust_flags)


def _top5(logits: Tensor) -> Tensor:
    return logits.topk(min(5, logits.shape[1]), dim=1).indices


def _stages(attack: str, config: AttackEvalConfig) -> list[tuple[str, Component | None]]:
    """The cells an attack fills in order: one per stage of an AutoAttack cascade, else its own."""
    return stages(attack, config.restarts) if is_autoattack(attack) else [(attack, None)]


def _flags(cells: dict, name: str, eps: list[Epsilon], size: int) -> np.ndarray:
    """The stored per-sample flags (E, positions) of cell ``name`` at ``eps`` (the clean cell's
    at every ε for ``clean``)."""
    return np.stack([unpack_flags(cells[CLEAN if name == CLEAN[0] else (name, e.text)].mask)[:size] for e in eps])


def run_identity(config: AttackEvalConfig, source, checkpoint_sha256: str | None, precision: str) -> dict:
    """What makes two runs the same run: the attacks' own parameters are part of it; the list of
    attacks and ε is not, so a run can be extended with more of either."""
    return {
        "model": config.model, "num_classes": config.num_classes, "checkpoint_sha256": checkpoint_sha256,
        **data_identity(source, config.data, None), "limit": config.limit, "seed": config.seed,
        "backend": config.backend, "steps": config.steps, "restarts": config.restarts,
        "rel_stepsize": config.rel_stepsize, "random_start": True, "norm": config.norm, "queries": config.queries,
        "precision": precision, "version": __version__,
    }


def evaluate_attacks(config: AttackEvalConfig, progress: bool = True) -> dict:
    """Run (or resume) an attack evaluation; returns the run summary and the stored run's
    ``run_id`` (rank 0; others get {})."""
    eps = _check(config)
    ctx = init_distributed(config.device)
    precision = effective_precision(config.precision, ctx.device)
    model = prepare(load_eval_model(config.model, config.num_classes, config.checkpoint, config.seed), ctx.device)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    source = open_checked_source("generated", config.data, model, config.model, None, config.class_index)
    indices = selected_indices(source, config.limit, config.seed)
    sha = file_sha256(config.checkpoint) if config.checkpoint else None
    store = open_store(config.db, ctx)
    identity = run_identity(config, source, sha, precision)
    run = start_run(store, "attack", config.model, identity, config.name) if store else None
    done = broadcast(store.cells(run) if store else None, ctx)
    runner = _AttackRunner(config, model, source.clean, indices, ctx, precision)
    todo = {name: [e for e in eps if (name, e.text) not in done]
            for attack in config.attacks for name, _ in _stages(attack, config)}
    total = len(indices) * ((CLEAN not in done) + sum(len(v) for v in todo.values()))
    bar = progress_bar(total, "eval-attack", progress and ctx.is_main)

    def record(cells: list[Cell]) -> None:
        done.update({(cell.name, cell.level): cell for cell in cells})
        if store:
            for cell in cells:
                store.add_cell(run, cell)
        barrier(ctx)

    flags, classes = runner.model_checks()
    for attack in config.attacks:
        for _, component in _stages(attack, config):
            if component is not None and classes is not None:
                check_classes(component, classes)
    if CLEAN not in done:
        record([runner.clean(bar)])
    for attack in config.attacks:
        previous = CLEAN[0]  # the first stage attacks the samples classified correctly
        for name, component in _stages(attack, config):
            if todo[name]:
                bar.set_postfix_str(name)
                if component is None:
                    record(runner.attack(name, todo[name], bar))
                else:
                    prior = _flags(done, previous, todo[name], len(indices))
                    record(runner.autoattack_stage(name, component, todo[name], prior, bar))
            previous = name
    bar.close()
    if not store:
        return {}
    cells = store.cells(run)
    summary = summarize_attacks(run, cells)
    summary["report"] = [flag.as_dict() for flag in flags + run_flags(summary, cells, len(indices), config.norm)]
    for flag in summary["report"]:
        warnings.warn(f"{flag['name']}: {flag['message']}", stacklevel=2)
    if config.json:
        write_json(config.json, summary)
    return {**summary, "run_id": run.id}
