"""The attack evaluation: robust accuracy per (attack, ε) and the worst case over attacks.

A sample is robust at ε when it is classified correctly and survives the attack; the worst case
counts it only when it survives every attack of the run. Each (attack, ε) cell stores its counts
and the per-sample robust flags (so the worst case can be formed later), as soon as the attack
is done for all its pending ε; rerunning skips finished cells. The attacks draw each (image, ε)
random start from its own seed (foolbox's PGD too), so a cell does not depend on the other ε of a
sweep nor on the batch size; only the reference backend (pyautoattack) is seeded per batch.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..attacks import (
    AttackSettings,
    Epsilon,
    attack_spec,
    attacks_by_norm,
    check_attack,
    check_epsilons,
    mixed_norms,
    run_attack,
)
from ..attacks.autoattack import (
    QUERIES,
    AutoAttackError,
    AutoAttackSettings,
    Component,
    RowAttack,
    attack_robust_rows,
    check_classes,
    check_reference_installed,
    is_autoattack,
    native_attack,
    reference_attack,
    stages,
)
from ..attacks.rows import Logits, logits_function, top_hits
from ..data.batches import ImageBatches
from ..data.sources import EvalSource
from ..devices import effective_precision, prepare, to_float_images
from ..distributed import DistContext, barrier, broadcast, gather_flags, init_distributed, sum_counts
from ..models.zoo import file_sha256
from ..progress import Progress, progress_bar
from ..results import DEFAULT_DB, AskedCells, Cell, ResultStore, write_json
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
    labels: Path | None = None  # a flat folder's labels file (the official ImageNet validation layout)
    db: Path = DEFAULT_DB
    json: Path | None = None
    name: str | None = None  # a label for tables and --run; not part of the run's identity


def check_config(config: AttackEvalConfig) -> list[Epsilon]:
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
    grouped = attacks_by_norm(config.attacks, config.norm)
    if len(grouped) > 1:
        raise EvaluationError(f"--attacks mixes threat models ({mixed_norms(grouped)}): a worst case over them would "
                              "mean nothing; evaluate each norm as its own run (--norm sets AutoAttack's)")
    if config.queries < 1:
        raise EvaluationError(f"--queries {config.queries}: pass a positive number of queries")
    eps = [Epsilon(*e) for e in config.eps]
    check_epsilons(eps, _bounding_norm(config))
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


def _bounding_norm(config: AttackEvalConfig) -> str:
    """The norm that bounds the run's ε: the one norm of its attacks (``check_config`` refuses a mix)."""
    return next(iter(attacks_by_norm(config.attacks, config.norm)))


def _check_stored_norms(store: ResultStore, identity: dict, config: AttackEvalConfig) -> None:
    """Extending a stored run with attacks of another norm would mix threat models in its worst
    case: refused before anything is written."""
    stored = store.existing_run("attack", identity)
    names = [name for name, _ in store.cells(stored) if name != CLEAN] if stored else []
    grouped = attacks_by_norm(list(dict.fromkeys(names + list(config.attacks))), config.norm)
    if len(grouped) > 1:
        raise EvaluationError(f"run {stored.id} in {store.path} holds attacks of another norm ({mixed_norms(grouped)})"
                              ": a worst case over them would mean nothing; evaluate this norm into another --db")


def _check_model(config: AttackEvalConfig, eps: list[Epsilon], source: EvalSource) -> None:
    """What needs the model's images and classes: the L2 bound on ε, and the classes the
    AutoAttack components need (the data's, which ``open_checked_source`` matched to the model's)."""
    check_epsilons(eps, _bounding_norm(config), source.input_size)
    for attack in config.attacks:
        for _, component in _stages(attack, config):
            if component is not None:
                check_classes(component, source.num_classes)


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

    def model_checks(self) -> list[Flag]:
        """The model checks on the first batch (each rank on its share; rank 0's are reported)."""
        flags = []
        for images, labels, _ in self._batches(self.indices[:self.config.batch_size]):
            flags += model_flags(self.model, to_float_images(images, self.ctx.device), labels)
        return flags

    def autoattack_stage(self, cell: str, component: Component, eps: list[Epsilon], priors: list[Cell],
                         bar: Progress) -> list[Cell]:
        """One stage of an AutoAttack cascade at the pending ``eps``: it attacks, from the clean
        image, the (image, ε) rows that ``priors`` (a cell per ε: the clean cell for the first
        stage, else the stage before's) left robust, and returns the cells of the samples still
        robust after it. Top-5 errors are cumulative like top-1: a sample counts once it is out of
        the top 5 at the clean image or after any stage so far, i.e. the prior cell's top-5 errors
        plus the rows this stage pushes out of the top 5 (it attacks only rows top-1 correct so
        far, so none of them was counted before)."""
        c, device = self.config, self.ctx.device
        logits = logits_function(self.model, self.settings.autocast)
        radii = torch.tensor([e.value for e in eps], device=device)
        prior = _flags(priors, len(self.indices))
        robust_flags: dict[int, np.ndarray] = {}
        counts = np.zeros((len(eps), 3), dtype=np.int64)  # n, top-1 errors, new top-5 errors
        batches = self._batches()
        for images, labels, index in batches:
            robust = torch.from_numpy(prior[:, [self.position[int(i)] for i in index]]).to(device)
            robust, top5_missed = attack_robust_rows(
                self._row_attack(component, cell, int(index[0]), logits), logits, to_float_images(images, device),
                labels, radii, robust, start_streams(c.seed, cell, eps, index, device))
            counts[:, 0] += len(labels)
            counts[:, 1] += (~robust).sum(1).cpu().numpy()
            counts[:, 2] += top5_missed.sum(1).cpu().numpy()
            flags = robust.cpu().numpy()
            robust_flags.update({self.position[int(i)]: flags[:, k] for k, i in enumerate(index)})
            bar.update(len(labels) * len(eps) * self.ctx.world)
        cells = self._cells(cell, eps, counts, batches, robust_flags)
        return [replace(new, top5_errors=new.top5_errors + old.top5_errors) for new, old in zip(cells, priors)]

    def _row_attack(self, component: Component, cell: str, first_index: int, logits: Logits) -> RowAttack:
        """The component on a batch's rows: native, or pyautoattack seeded per (batch, ε) (--backend reference)."""
        settings = _autoattack_settings(self.config)
        if self.config.backend == "reference":
            return reference_attack(component, self.model, lambda radius: batch_seed(
                self.config.seed, f"{cell}@{radius!r}", first_index), settings)
        return native_attack(component, logits, settings)

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

    def attack(self, name: str, eps: list[Epsilon], clean: Cell, bar: Progress) -> list[Cell]:
        """The cells of attack ``name`` at ``eps``: a sample is robust when the ``clean`` cell has
        it classified correctly and the attack leaves it so."""
        values = [e.value for e in eps]
        clean_correct = _flags([clean], len(self.indices))[0]
        robust_flags: dict[int, np.ndarray] = {}
        counts = np.zeros((len(eps), 3), dtype=np.int64)  # n, top-1 errors, top-5 errors
        batches = self._batches()
        for images, labels, index in batches:
            images = to_float_images(images, self.ctx.device)
            streams = start_streams(self.config.seed, name, eps, index, self.ctx.device)
            adversarial = run_attack(name, self.model, images, labels, values, self.settings, streams)
            with torch.no_grad():
                top1, top5 = top_hits(self.model(adversarial.flatten(0, 1)).float(), labels.repeat(len(values)))
            correct = torch.from_numpy(clean_correct[[self.position[int(i)] for i in index]]).to(labels.device)
            robust = top1.view(len(values), -1) & correct
            counts[:, 0] += len(labels)
            counts[:, 1] += (~robust).sum(1).cpu().numpy()
            counts[:, 2] += (~top5.view(len(values), -1)).sum(1).cpu().numpy()
            robust = robust.cpu().numpy()
            robust_flags.update({self.position[int(i)]: robust[:, k] for k, i in enumerate(index)})
            bar.update(len(labels) * len(values) * self.ctx.world)
        return self._cells(name, eps, counts, batches, robust_flags)


def _stages(attack: str, config: AttackEvalConfig) -> list[tuple[str, Component | None]]:
    """The cells an attack fills in order: one per stage of an AutoAttack cascade, else its own."""
    return stages(attack, config.restarts) if is_autoattack(attack) else [(attack, None)]


def _flags(cells: list[Cell], size: int) -> np.ndarray:
    """The stored per-sample flags (len(cells), positions) of ``cells``."""
    return np.stack([unpack_flags(cell.mask)[:size] for cell in cells])


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
    eps = check_config(config)
    ctx = init_distributed(config.device)
    precision = effective_precision(config.precision, ctx.device)
    model = prepare(load_eval_model(config.model, config.num_classes, config.checkpoint, config.seed), ctx.device)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    source = open_checked_source("generated", config.data, model, config.model, None, config.class_index,
                                 config.labels)
    _check_model(config, eps, source)
    indices = selected_indices(source, config.limit, config.seed)
    sha = file_sha256(config.checkpoint) if config.checkpoint else None
    store = open_store(config.db, ctx)
    identity = run_identity(config, source, sha, precision)
    if store:
        _check_stored_norms(store, identity, config)
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

    flags = runner.model_checks()
    if CLEAN not in done:
        record([runner.clean(bar)])
    for attack in config.attacks:
        prior = dict.fromkeys(eps, CLEAN)  # per ε, the cell a stage starts from: first the clean one
        for name, component in _stages(attack, config):
            if todo[name]:
                bar.set_postfix_str(name)
                if component is None:
                    record(runner.attack(name, todo[name], done[CLEAN], bar))
                else:
                    priors = [done[prior[e]] for e in todo[name]]
                    record(runner.autoattack_stage(name, component, todo[name], priors, bar))
            prior = {e: (name, e.text) for e in eps}
    bar.close()
    if not store:
        return {}
    wanted = [CLEAN] + [(name, e.text) for attack in config.attacks for name, _ in _stages(attack, config)
                        for e in eps]
    cells = AskedCells(store, run.id, wanted).cells(run)
    summary = summarize_attacks(run, cells)
    summary["report"] = [flag.as_dict() for flag in flags + run_flags(summary, cells, len(indices), config.norm)]
    for flag in summary["report"]:
        warnings.warn(f"{flag['name']}: {flag['message']}", stacklevel=2)
    if config.json:
        write_json(config.json, summary)
    return {**summary, "run_id": run.id, "asked": wanted}
