"""The natural-shift evaluation: top-1/top-5 error of an ImageNet model on a released shifted set
(ImageNet-A, -R, -Sketch, V2) and, with a clean set, on the ImageNet validation images of the
classes the shift is scored over: the two accuracies effective robustness compares.

A and R are scored over their 200 classes: the logits of the other 800 classes are left out
before the argmax and the top 5. Both sets are cells of one run, stored in parts of
``chunk_size`` images as they are counted, so rerunning the command resumes where it stopped;
every check runs before the first image, so a refused run leaves the store as it was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset

from ..choices import DECODERS, SHIFT_SOURCES
from ..data.batches import DeviceDecoding, ImageBatches
from ..data.folders import RESIZE_FROM, balanced_subset, eval_geometry, eval_transform
from ..data.labels import labels_digest
from ..data.shifts import IMAGENET_CLASSES, TITLES, ShiftSet, clean_samples, open_shift
from ..data.sources import DatasetError, ImageFiles, files_fingerprint
from ..devices import as_model_input, autocast, effective_precision, prepare, to_float_images
from ..distributed import DistContext, barrier, broadcast, init_distributed
from ..effective_robustness import EffectiveRobustness, Estimate, Trend
from ..errors import counted
from ..models.zoo import file_sha256
from ..progress import Progress, progress_bar
from ..results import DEFAULT_DB, AskedCells, CellPart, write_json
from ..statistics import DEFAULT_CONFIDENCE
from ..summaries import CLEAN, pack_flags, summarize_shift
from ..version import __version__
from .common import (
    DEFAULT_WORKERS,
    EvaluationError,
    Tally,
    check_run_options,
    load_eval_model,
    model_classes,
    open_store,
    start_run,
)
from .corruption import merge_parts
from .parts import add_part, pending

Key = tuple[str, str]


@dataclass
class ShiftEvalConfig:
    """Everything ``gcp-robust eval-shift`` takes."""

    model: str
    source: str
    data: Path
    variant: str | None = None  # ImageNetV2's: matched-frequency (default), threshold0.7, top-images
    checkpoint: Path | None = None
    num_classes: int | None = None
    clean_data: Path | None = None  # the ImageNet validation set: the clean accuracy of effective robustness
    labels: Path | None = None  # labels of a flat --clean-data folder
    limit: int | None = None  # per set: a class-balanced, seeded subset of the shifted and of the clean images
    seed: int = 0
    batch_size: int = 128
    workers: int = DEFAULT_WORKERS
    device: str | None = None
    precision: str = "bf16"
    strict: bool = False
    decode: str = "pil"
    chunk_size: int = 2048  # images per stored part: what an interruption can lose
    db: Path = DEFAULT_DB
    json: Path | None = None
    name: str | None = None
    trends: Mapping[str, Trend] = field(default_factory=dict)  # given trends (--trend), for the summary only


def check_config(config: ShiftEvalConfig) -> None:
    if config.source not in SHIFT_SOURCES:
        raise EvaluationError(f"--source {config.source!r}: choose one of {', '.join(SHIFT_SOURCES)}")
    if config.labels is not None and config.clean_data is None:
        raise EvaluationError("--labels gives the labels of a flat --clean-data folder; pass --clean-data too")
    check_run_options(limit=config.limit, batch_size=config.batch_size, workers=config.workers,
                      num_classes=config.num_classes, precision=config.precision, json=config.json)
    if config.chunk_size < 1:
        raise EvaluationError(f"--chunk-size {config.chunk_size}: pass a positive number of images")
    if config.decode not in DECODERS:
        raise EvaluationError(f"--decode {config.decode!r}: choose one of {', '.join(DECODERS)}")


def _check_model(config: ShiftEvalConfig, model: nn.Module) -> int:
    """The model's input size, once it is known to classify the 1,000 ImageNet classes."""
    classes, size = model_classes(model), model.architecture.input_size
    if classes != IMAGENET_CLASSES:
        raise EvaluationError(f"{config.model} outputs {counted(classes, 'class')} but {TITLES[config.source]} is "
                              "scored on the 1000 ImageNet outputs; pass an ImageNet model")
    if size < RESIZE_FROM:
        raise EvaluationError(f"{config.model} takes {size}-px images; the shifted sets are ImageNet photos of any "
                              f"size, resized to {RESIZE_FROM} px or more: pass an ImageNet model")
    return size


def _open(config: ShiftEvalConfig) -> tuple[ShiftSet, list[tuple[str, int]] | None]:
    try:
        shift = open_shift(config.source, config.data, config.variant)
        clean = clean_samples(config.clean_data, shift.outputs, config.labels) if config.clean_data else None
    except DatasetError as error:
        raise EvaluationError(str(error)) from None
    return shift, clean


def run_identity(config: ShiftEvalConfig, shift: ShiftSet, clean: list[tuple[str, int]] | None,
                 checkpoint_sha256: str | None, input_size: int, precision: str) -> dict:
    """What makes two runs the same run (and so what a rerun may resume)."""
    clean_set = None
    if clean is not None:
        clean_set = {"dataset": str(Path(config.clean_data).resolve()), "size": len(clean),
                     "labels_sha256": labels_digest(Path(config.labels)) if config.labels else None}
    return {
        "model": config.model,
        "num_classes": config.num_classes,
        "checkpoint_sha256": checkpoint_sha256,
        "model_classes": IMAGENET_CLASSES,
        "dataset": str(Path(config.data).resolve()),
        "dataset_size": len(shift.samples),
        "fingerprint": shift.fingerprint,
        "source": shift.source,
        "variant": shift.variant,
        "shift": shift.key,
        "classes": shift.classes,
        "clean": clean_set,
        "clean_fingerprint": files_fingerprint(path for path, _ in clean) if clean is not None else None,
        "input_size": input_size,
        "limit": config.limit,
        "seed": config.seed,
        "precision": precision,
        "decode": config.decode,
        "version": __version__,
    }


def _subset(dataset: ImageFiles, limit: int | None, seed: int) -> list[int]:
    chosen = balanced_subset(dataset, limit, seed)
    return list(chosen.indices) if isinstance(chosen, Subset) else list(range(len(dataset)))


class _Counter:
    """Counts one cell's images over chunks of its positions, scored over ``outputs`` (all: None)."""

    def __init__(self, config: ShiftEvalConfig, model: nn.Module, outputs: Sequence[int] | None, input_size: int,
                 ctx: DistContext, precision: str) -> None:
        self.config, self.model, self.ctx, self.precision = config, model, ctx, precision
        self.outputs = torch.tensor(outputs, device=ctx.device) if outputs is not None else None
        self.decoding = DeviceDecoding(eval_geometry(input_size), input_size) if config.decode == "device" else None
        self._positions: dict[Key, dict[int, int]] = {}  # per cell: dataset index → position

    def _logits(self, images: torch.Tensor) -> torch.Tensor:
        with autocast(self.precision, self.ctx.device):
            logits = self.model(as_model_input(images)).float()
        return logits if self.outputs is None else logits.index_select(1, self.outputs)

    @torch.inference_mode()
    def count(self, cell: Key, dataset: ImageFiles, indices: np.ndarray, chunk: np.ndarray, bar: Progress) -> CellPart:
        """The counts of ``cell`` over the positions ``chunk`` of ``indices`` (all ranks together)."""
        c = self.config
        batches = ImageBatches(dataset, indices[chunk].tolist(), c.batch_size, c.workers, self.ctx, c.strict,
                               self.decoding)
        tally = Tally()
        for images, labels, index in batches:
            tally.add(self._logits(to_float_images(images, self.ctx.device)), labels, index)
            bar.update(len(index) * self.ctx.world)
        if cell not in self._positions:
            self._positions[cell] = {int(index): p for p, index in enumerate(indices)}
        (n, top1, top5, skipped), flags = tally.counts(batches.skipped, self._positions[cell], self.ctx)
        covered = np.zeros(len(indices), dtype=bool)
        covered[chunk] = True
        return CellPart(*cell, n, top1, top5, skipped, pack_flags(flags), pack_flags(covered))


def estimate_fields(estimate: Estimate) -> dict:
    """A run's effective robustness as summary fields (points), with the trend it is measured from."""
    trend = estimate.trend
    return {
        "effective_robustness": estimate.value,
        "effective_robustness_ci": list(estimate.interval) if estimate.interval else None,
        "trend": {"slope": round(trend.slope, 6), "intercept": round(trend.intercept, 6), "source": trend.source,
                  "fitted_on_runs": list(trend.fitted_on)} if trend else None,
        "effective_robustness_note": None if trend else estimate.note,
    }


def evaluate_shift(config: ShiftEvalConfig, progress: bool = True) -> dict:
    """Run (or resume) a natural-shift evaluation; returns the run summary with its effective
    robustness and the stored run's ``run_id`` (rank 0; other ranks get {})."""
    check_config(config)
    shift, clean = _open(config)  # a tree of the wrong layout is refused before the model is loaded
    ctx = init_distributed(config.device)
    precision = effective_precision(config.precision, ctx.device)
    model = prepare(load_eval_model(config.model, config.num_classes, config.checkpoint, config.seed), ctx.device)
    input_size = _check_model(config, model)
    transform = eval_transform(input_size)
    sets = {CLEAN: clean} if clean is not None else {}
    sets[shift.key, "0"] = shift.samples
    datasets = {cell: ImageFiles(samples, transform, input_size) for cell, samples in sets.items()}
    indices = {cell: np.asarray(_subset(data, config.limit, config.seed), dtype=np.int64)
               for cell, data in datasets.items()}
    sizes = {cell: len(chosen) for cell, chosen in indices.items()}
    sha = file_sha256(config.checkpoint) if config.checkpoint else None
    identity = run_identity(config, shift, clean, sha, input_size, precision)
    store = open_store(config.db, ctx)
    run = start_run(store, "shift", config.model, identity, config.name) if store else None
    todo, stored = pending(store, run, list(sets), sizes, merge_parts) if store else (None, {})
    todo = broadcast(todo, ctx)
    counter = _Counter(config, model, shift.outputs, input_size, ctx, precision)
    bar = progress_bar(int(sum(missing.sum() for missing in todo.values())), "eval-shift", progress and ctx.is_main)
    step = -(-config.chunk_size // config.batch_size) * config.batch_size  # whole batches: the same sums at any size
    for cell, missing in todo.items():
        work = np.flatnonzero(missing)
        bar.set_postfix_str(cell[0])
        for start in range(0, len(work), step):
            part = counter.count(cell, datasets[cell], indices[cell], work[start : start + step], bar)
            if store:
                add_part(store, run, part, stored, sizes[cell], merge_parts)
            barrier(ctx)
    bar.close()
    if not store:
        return {}
    summary = summarize_shift(run, AskedCells(store, run.id, list(sets)).cells(run))
    summary.update(estimate_fields(EffectiveRobustness(store, config.trends).estimate(run, DEFAULT_CONFIDENCE)))
    if config.json:
        write_json(config.json, summary)
    return {**summary, "run_id": run.id, "asked": list(sets)}
