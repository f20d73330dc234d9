"""The corruption evaluation: clean error and top-1/top-5 errors per (corruption, severity).

Each cell's counts go into the results store as soon as the cell is done, so rerunning the same
command skips finished cells and an interruption loses at most the cell in flight. Per-image
seeds make the numbers independent of batch size, device count and resume point. Every check
runs before the first cell, so a refused configuration leaves the store as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from ..corruptions import BACKENDS, PROTOCOLS, corrupt, names
from ..corruptions.api import check_name, is_severity
from ..corruptions.params import MIN_SIZE
from ..data.sources import DatasetError, EvalSource
from ..devices import as_model_input, autocast, effective_precision, prepare
from ..distributed import DistContext, barrier, broadcast, init_distributed
from ..models.zoo import file_sha256
from ..progress import Progress, progress_bar
from ..results import DEFAULT_DB, Cell, write_json
from ..rng import image_generators
from ..summaries import CLEAN, summarize_corruptions
from ..version import __version__
from .common import (
    DEFAULT_WORKERS,
    EvaluationError,
    ImageBatches,
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
class CorruptionEvalConfig:
    """Everything ``gcp-robust eval-corruption`` takes."""

    model: str
    data: Path
    checkpoint: Path | None = None
    num_classes: int | None = None
    source: str = "generated"
    protocol: str | None = None  # None: the one that fits the model's input size (default_protocol)
    backend: str = "native"
    corruptions: Sequence[str] = field(default_factory=lambda: names("common"))
    severities: Sequence[int] = (1, 2, 3, 4, 5)
    limit: int | None = None
    seed: int = 0
    batch_size: int = 128
    workers: int = DEFAULT_WORKERS
    device: str | None = None
    precision: str = "bf16"  # bf16 autocast on CUDA; the CPU always runs float32
    strict: bool = False
    clean_data: Path | None = None
    class_index: Path | None = None
    db: Path = DEFAULT_DB
    json: Path | None = None
    name: str | None = None  # a label for tables and --run; not part of the run's identity


def default_protocol(input_size: int) -> str:
    """imagenet-c for 224-px models, cifar10-c for 32-px ones: the generators they were made for."""
    return "imagenet-c" if input_size >= MIN_SIZE["imagenet-c"] else "cifar10-c"


def _check(config: CorruptionEvalConfig) -> None:
    if not config.corruptions:
        raise EvaluationError("--corruptions selects no corruption; pass names (gaussian_noise,fog) or a subset "
                              "(common, all, noise, ...)")
    for name in config.corruptions:
        check_name(name)
    if not config.severities:
        raise EvaluationError("--severities selects no severity; pass some of 1,2,3,4,5")
    for severity in config.severities:
        if not is_severity(severity):
            raise EvaluationError(f"--severities: {severity!r} is not a severity; severities are 1 to 5")
    if config.protocol is not None and config.protocol not in PROTOCOLS:
        raise EvaluationError(f"--protocol {config.protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    if config.backend not in BACKENDS:
        raise EvaluationError(f"--backend {config.backend!r}: choose one of {', '.join(BACKENDS)}")
    if config.source == "generated" and config.backend == "reference" and config.protocol != "imagecorruptions":
        raise EvaluationError("--backend reference runs the imagecorruptions package: use it with "
                              "--protocol imagecorruptions")
    check_run_options(limit=config.limit, batch_size=config.batch_size, workers=config.workers,
                      num_classes=config.num_classes, precision=config.precision, json=config.json)


def _check_source(config: CorruptionEvalConfig, source: EvalSource) -> None:
    """What only the opened data and model can tell: cells present, images large enough for the protocol."""
    try:
        for name in config.corruptions:
            for severity in config.severities:
                source.check_cell(name, severity)
    except DatasetError as error:
        raise EvaluationError(str(error)) from None
    if source.on_the_fly and source.input_size < MIN_SIZE[config.protocol]:
        raise EvaluationError(
            f"protocol {config.protocol!r} needs images of at least {MIN_SIZE[config.protocol]} px but "
            f"{config.model} takes {source.input_size} px; pass --protocol cifar10-c for 32-px models"
        )


def run_identity(config: CorruptionEvalConfig, source: EvalSource, checkpoint_sha256: str | None,
                 precision: str) -> dict:
    """What makes two runs the same run (and so what a rerun may resume)."""
    on_the_fly = source.on_the_fly
    return {
        "model": config.model,
        "num_classes": config.num_classes,
        "checkpoint_sha256": checkpoint_sha256,
        "model_classes": source.num_classes,
        **data_identity(source, config.data, config.clean_data),
        "source": config.source,
        "protocol": config.protocol if on_the_fly else None,
        "backend": config.backend if on_the_fly else None,
        "limit": config.limit,
        "seed": config.seed,
        "precision": precision,
        "version": __version__,
    }


class _CellRunner:
    """Evaluates cells of one run on this rank's share of the images."""

    def __init__(self, config: CorruptionEvalConfig, model: nn.Module, source: EvalSource, indices: list[int],
                 ctx: DistContext, precision: str) -> None:
        self.config, self.model, self.source, self.ctx, self.precision = config, model, source, ctx, precision
        self.indices = indices
        self.positions = {index: p for p, index in enumerate(indices)}

    @torch.inference_mode()
    def run(self, name: str, level: str, bar: Progress) -> Cell:
        severity = int(level)
        dataset = self.source.clean if name == "clean" else self.source.cell(name, severity)
        corrupting = name != "clean" and self.source.on_the_fly
        config, device = self.config, self.ctx.device

        def logits_of(images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
            if corrupting:
                generators = image_generators(config.seed, index.tolist(), name, severity, device)
                images = corrupt(images, name, severity, protocol=config.protocol, backend=config.backend,
                                 generator=generators)
            with autocast(self.precision, device):
                return self.model(as_model_input(images)).float()

        batches = ImageBatches(dataset, self.indices, config.batch_size, config.workers, self.ctx, config.strict)
        return count_cell(name, level, batches, logits_of, self.positions, self.ctx, bar)


def evaluate_corruptions(config: CorruptionEvalConfig, progress: bool = True) -> dict:
    """Run (or resume) a corruption evaluation; returns the run summary and the stored run's
    ``run_id`` (rank 0; others get {})."""
    _check(config)
    ctx = init_distributed(config.device)
    precision = effective_precision(config.precision, ctx.device)
    model = prepare(load_eval_model(config.model, config.num_classes, config.checkpoint, config.seed), ctx.device)
    source = open_checked_source(config.source, config.data, model, config.model, config.clean_data,
                                 config.class_index)
    if config.protocol is None:
        config = replace(config, protocol=default_protocol(source.input_size))
    _check_source(config, source)
    indices = selected_indices(source, config.limit, config.seed)
    sha = file_sha256(config.checkpoint) if config.checkpoint else None
    identity = run_identity(config, source, sha, precision)
    store = open_store(config.db, ctx)
    run = start_run(store, "corruption", config.model, identity, config.name) if store else None
    wanted = [CLEAN] * (source.clean is not None) + [(c, str(s)) for c in config.corruptions for s in config.severities]
    pending = broadcast([cell for cell in wanted if cell not in store.cells(run)] if store else None, ctx)
    runner = _CellRunner(config, model, source, indices, ctx, precision)
    bar = progress_bar(len(pending) * len(indices), "eval-corruption", progress and ctx.is_main)
    for name, level in pending:
        bar.set_postfix_str(f"{name} {level}")
        cell = runner.run(name, level, bar)
        if store:
            store.add_cell(run, cell)
        barrier(ctx)
    bar.close()
    if not store:
        return {}
    summary = summarize_corruptions(run, store.cells(run), config.corruptions)
    if config.json:
        write_json(config.json, summary)
    return {**summary, "run_id": run.id}
