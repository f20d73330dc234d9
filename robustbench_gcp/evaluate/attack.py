"""The attack evaluation: robust accuracy per (attack, ε) and the worst case over attacks.

A sample is robust at ε when it is classified correctly and survives the attack; the worst case
counts it only when it survives every attack of the run. Each (attack, ε) cell stores its counts
and the per-sample robust flags (so the worst case can be formed later), as soon as the attack
is done for all its pending ε; rerunning skips finished cells.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from .. import __version__
from ..attacks import ATTACKS, AttackSettings, attack_spec, parse_epsilons, run_attack
from ..corruptions.seeding import image_generators
from ..models.zoo import file_sha256
from ..results import DEFAULT_DB, Cell, ResultStore, Run, write_json
from .clean import Counts, to_float_images
from .common import EvaluationError, load_eval_model, open_checked_source, prepare
from .distributed import DistContext, barrier, broadcast, init_distributed, sum_counts

CLEAN = ("clean", "0")


@dataclass
class AttackEvalConfig:
    """Everything ``gcp-robust eval-attack`` takes."""

    model: str
    data: Path
    attacks: Sequence[str]
    eps: str  # comma-separated, fractions allowed: "0,1/255,2/255"
    checkpoint: Path | None = None
    num_classes: int | None = None
    steps: int | None = None
    restarts: int = 1
    rel_stepsize: float | None = None
    backend: str = "native"
    bf16: bool = False  # native attacks on CUDA only
    limit: int | None = None
    seed: int = 0
    batch_size: int = 128
    workers: int = 4
    device: str | None = None
    class_index: Path | None = None
    db: Path = DEFAULT_DB
    json: Path | None = None


def _check(config: AttackEvalConfig) -> list[tuple[str, float]]:
    for name in config.attacks:
        attack_spec(name)
    if config.restarts < 1:
        raise EvaluationError("--restarts must be at least 1")
    return sorted(parse_epsilons(config.eps), key=lambda pair: pair[1])


def _pack(flags: np.ndarray) -> bytes:
    return np.packbits(flags.astype(bool)).tobytes()


def _unpack(mask: bytes) -> np.ndarray:
    """Flags back from ``_pack``; the padding bits are 0, so they never count as robust."""
    return np.unpackbits(np.frombuffer(mask, dtype=np.uint8)).astype(bool)


def _batch_seed(seed: int, attack: str, first_index: int) -> int:
    """foolbox draws from torch's global RNG: seed it per batch, from the batch's first image."""
    return int.from_bytes(hashlib.blake2b(f"{seed}/{attack}/{first_index}".encode(), digest_size=4).digest(), "little")


def _gather_flags(local: dict[int, np.ndarray], size: int, rows: int, ctx: DistContext) -> np.ndarray:
    """Per-position flags (rows × positions) from every rank's share."""
    parts = [local]
    if ctx.world > 1:
        parts = [None] * ctx.world
        dist.all_gather_object(parts, local)
    flags = np.zeros((rows, size), dtype=bool)
    for part in parts:
        for position, values in part.items():
            flags[:, position] = values
    return flags


class _AttackRunner:
    def __init__(self, config: AttackEvalConfig, model: nn.Module, dataset, indices: list[int], ctx: DistContext):
        self.config, self.model, self.dataset, self.ctx = config, model, dataset, ctx
        self.indices = indices
        self.position = {index: p for p, index in enumerate(indices)}
        self.settings = AttackSettings(
            steps=config.steps, restarts=config.restarts, rel_stepsize=config.rel_stepsize, backend=config.backend,
            autocast=config.bf16 and ctx.device.type == "cuda",
        )
        self.warned_gradients = False

    def _batches(self):
        mine = self.indices[self.ctx.rank :: self.ctx.world]
        loader = DataLoader(Subset(self.dataset, mine), batch_size=self.config.batch_size,
                            num_workers=self.config.workers, pin_memory=self.ctx.device.type == "cuda")
        for images, labels, index, readable in loader:
            yield to_float_images(images[readable], self.ctx.device), labels[readable].to(self.ctx.device), \
                index[readable]

    def _check_gradients(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """RobustBench-style check: all-zero or non-finite input gradients hint at gradient masking."""
        if self.warned_gradients:
            return
        images = images.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(self.model(images), labels, reduction="sum"), images)
        if not torch.isfinite(grad).all() or not grad.abs().sum(dim=(1, 2, 3)).gt(0).any():
            warnings.warn("input gradients of a batch are all zero or not finite: the model may mask gradients, "
                          "so gradient attacks can overstate robustness", stacklevel=2)
            self.warned_gradients = True

    def clean(self, bar: tqdm) -> Cell:
        counts = Counts()
        with torch.no_grad():
            for images, labels, _ in self._batches():
                counts.add(self.model(images), labels)
                bar.update(len(labels) * self.ctx.world)
        return Cell(*CLEAN, *sum_counts([counts.n, counts.top1_errors, counts.top5_errors], self.ctx))

    def attack(self, name: str, eps: list[tuple[str, float]], bar: tqdm) -> list[Cell]:
        values = [value for _, value in eps]
        robust_flags: dict[int, np.ndarray] = {}
        counts = np.zeros((len(eps), 3), dtype=np.int64)  # n, top-1 errors, top-5 errors
        for images, labels, index in self._batches():
            self._check_gradients(images, labels)
            generators = image_generators(self.config.seed, index.tolist(), name, 0, self.ctx.device)
            torch.manual_seed(_batch_seed(self.config.seed, name, int(index[0])))
            adversarial = run_attack(name, self.model, images, labels, values, self.settings, generators)
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
        flags = _gather_flags(robust_flags, len(self.indices), len(values), self.ctx)
        return [
            Cell(name, text, int(n), int(top1), int(top5), mask=_pack(flags[k]))
            for k, ((text, _), (n, top1, top5)) in enumerate(zip(eps, totals))
        ]


def run_identity(config: AttackEvalConfig, dataset_size: int, checkpoint_sha256: str | None) -> dict:
    return {
        "model": config.model, "num_classes": config.num_classes, "checkpoint_sha256": checkpoint_sha256,
        "dataset": str(Path(config.data).resolve()), "dataset_size": dataset_size, "limit": config.limit,
        "seed": config.seed, "backend": config.backend, "steps": config.steps, "restarts": config.restarts,
        "rel_stepsize": config.rel_stepsize, "precision": "bf16" if config.bf16 else "fp32", "version": __version__,
    }


def summarize_attacks(run: Run, cells: dict[tuple[str, str], Cell]) -> dict:
    """The JSON summary of an attack run (percent; eps keys as given)."""
    clean = cells.get(CLEAN)
    n = clean.n if clean else 0
    attacks = [a for a in ATTACKS if any(name == a for name, _ in cells)]
    levels = sorted({level for name, level in cells if name != "clean"}, key=lambda t: parse_epsilons(t)[0][1])

    def accuracy(cell: Cell) -> float:
        return round(100 * (1 - cell.top1_errors / cell.n), 4) if cell.n else None

    robust = {a: {lv: accuracy(cells[a, lv]) for lv in levels if (a, lv) in cells} for a in attacks}
    worst = {}
    for level in levels:
        masks = [_unpack(cells[a, level].mask) for a in attacks if (a, level) in cells]
        if masks and n:
            worst[level] = round(100 * float(np.logical_and.reduce(masks).sum()) / n, 4)
    return {
        "model": run.model,
        "checkpoint_sha256": run.config.get("checkpoint_sha256"),
        "dataset": run.config.get("dataset"),
        "n": n,
        "clean_accuracy": accuracy(clean) if clean else None,
        "robust_accuracy": robust,
        "worst_case": worst,
    }


def _warn_if_rising(summary: dict) -> None:
    for attack, by_eps in [*summary["robust_accuracy"].items(), ("worst case", summary["worst_case"])]:
        values = list(by_eps.values())
        if any(later > earlier for earlier, later in zip(values, values[1:])):
            warnings.warn(f"robust accuracy of {attack} rises with epsilon ({values}): the attack may be too weak "
                          "(more --steps or --restarts) or gradients masked", stacklevel=2)


def evaluate_attacks(config: AttackEvalConfig, progress: bool = True) -> dict:
    """Run (or resume) an attack evaluation; returns the run summary (rank 0; others get {})."""
    eps = _check(config)
    ctx = init_distributed(config.device)
    model = prepare(load_eval_model(config.model, config.num_classes, config.checkpoint, config.seed), ctx.device)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    source = open_checked_source("generated", config.data, model, config.model, None, config.class_index)
    sha = file_sha256(config.checkpoint) if config.checkpoint else None
    store = ResultStore(config.db) if ctx.is_main else None
    run = store.run("attack", config.model, run_identity(config, len(source.base_targets), sha)) if store else None
    done = broadcast(set(store.cells(run)) if store else None, ctx)
    indices = source.subset(config.limit, config.seed)
    runner = _AttackRunner(config, model, source.clean, indices, ctx)
    todo = {name: [e for e in eps if (name, e[0]) not in done] for name in config.attacks}
    total = len(indices) * ((CLEAN not in done) + sum(len(v) for v in todo.values()))
    bar = tqdm(total=total, unit="img", disable=not (progress and ctx.is_main), desc="eval-attack", dynamic_ncols=True)
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
    return summary
