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
import torch.nn.functional as F
from torch import Tensor, nn

from ..attacks import AttackSettings, Epsilon, attack_spec, check_epsilons, run_attack
from ..data.batches import ImageBatches
from ..devices import effective_precision, prepare, to_float_images
from ..distributed import DistContext, barrier, broadcast, gather_flags, init_distributed, sum_counts
from ..models.zoo import file_sha256
from ..progress import Progress, progress_bar
from ..results import DEFAULT_DB, Cell, write_json
from ..rng import ImageStreams, batch_seed, image_streams
from ..summaries import CLEAN, pack_flags, summarize_attacks
from ..version import __version__
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
        attack_spec(name)
    eps = [Epsilon(*e) for e in config.eps]
    check_epsilons(eps)
    settings = AttackSettings(steps=config.steps, restarts=config.restarts, rel_stepsize=config.rel_stepsize,
                              backend=config.backend)
    settings.check()
    for name in config.attacks:
        reach = settings.short_reach(attack_spec(name)) if config.rel_stepsize is not None else None
        if reach is not None:
            warnings.warn(f"{name}: --steps {settings.steps_of(attack_spec(name))} × --rel-stepsize "
                          f"{config.rel_stepsize:g} = {reach:.2f}: the attack travels at most {reach:.2f} ε from its "
                          "start, so it can stay far inside the ε-ball and overstate robustness; leave out "
                          "--rel-stepsize for 2.5 / steps", stacklevel=3)
    check_run_options(limit=config.limit, batch_size=config.batch_size, workers=config.workers,
                      num_classes=config.num_classes, precision=config.precision, json=config.json)
    return sorted(eps, key=lambda e: e.value)


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
        self.gradients_seen = False
        self.warned_gradients = False

    def _batches(self) -> ImageBatches:
        c = self.config
        return ImageBatches(self.dataset, self.indices, c.batch_size, c.workers, self.ctx, c.strict)

    def _note_gradient(self, grad: Tensor) -> None:
        """RobustBench-style check on the attack's own first-step gradients: all-zero or non-finite
        input gradients hint at gradient masking."""
        self.gradients_seen = True
        if self.warned_gradients:
            return
        if not torch.isfinite(grad).all() or not grad.abs().flatten(1).sum(1).gt(0).any():
            warnings.warn("input gradients of a batch are all zero or not finite: the model may mask gradients, "
                          "so gradient attacks can overstate robustness", stacklevel=2)
            self.warned_gradients = True

    def _check_gradients(self, images: Tensor, labels: Tensor) -> None:
        """For attacks that keep their gradients to themselves (foolbox): one extra pass, once a run."""
        images = images.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(self.model(images), labels, reduction="sum"), images)
        self._note_gradient(grad)

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
            adversarial = run_attack(name, self.model, images, labels, values, self.settings, streams,
                                     on_gradient=self._note_gradient)
            if not self.gradients_seen:
                self._check_gradients(images, labels)
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
        totals = np.array([sum_counts(row.tolist(), self.ctx) for row in counts])
        skipped = sum_counts([batches.skipped], self.ctx)[0]
        flags = gather_flags(robust_flags, len(self.indices), len(values), self.ctx)
        return [
            Cell(name, text, int(n), int(top1), int(top5), skipped, mask=pack_flags(flags[k]))
            for k, ((text, _), (n, top1, top5)) in enumerate(zip(eps, totals))
        ]


def run_identity(config: AttackEvalConfig, source, checkpoint_sha256: str | None, precision: str) -> dict:
    """What makes two runs the same run: the attacks' own parameters are part of it; the list of
    attacks and ε is not, so a run can be extended with more of either."""
    return {
        "model": config.model, "num_classes": config.num_classes, "checkpoint_sha256": checkpoint_sha256,
        **data_identity(source, config.data, None), "limit": config.limit, "seed": config.seed,
        "backend": config.backend, "steps": config.steps, "restarts": config.restarts,
        "rel_stepsize": config.rel_stepsize, "random_start": True, "precision": precision, "version": __version__,
    }


def _warn_if_rising(summary: dict) -> None:
    for attack, by_eps in [*summary["robust_accuracy"].items(), ("worst case", summary["worst_case"])]:
        values = list(by_eps.values())
        if any(later > earlier for earlier, later in zip(values, values[1:])):
            warnings.warn(f"robust accuracy of {attack} rises with epsilon ({values}): the attack may be too weak "
                          "(more --steps or --restarts) or gradients masked", stacklevel=2)


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
    done = broadcast(set(store.cells(run)) if store else None, ctx)
    runner = _AttackRunner(config, model, source.clean, indices, ctx, precision)
    todo = {name: [e for e in eps if (name, e.text) not in done] for name in config.attacks}
    total = len(indices) * ((CLEAN not in done) + sum(len(v) for v in todo.values()))
    bar = progress_bar(total, "eval-attack", progress and ctx.is_main)
    if CLEAN not in done:
        cell = runner.clean(bar)
        if store:
            store.add_cell(run, cell)
    for name, pending in todo.items():
        if not pending:
            continue
        bar.set_postfix_str(name)
        cells = runner.attack(name, pending, bar)
        if store:
            for cell in cells:
                store.add_cell(run, cell)
        barrier(ctx)
    bar.close()
    if not store:
        return {}
    summary = summarize_attacks(run, store.cells(run))
    _warn_if_rising(summary)
    if config.json:
        write_json(config.json, summary)
    return {**summary, "run_id": run.id}
