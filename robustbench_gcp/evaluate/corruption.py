"""The corruption evaluation: clean error and top-1/top-5 errors per (corruption, severity).

On-the-fly sources are processed in chunks of clean images decoded once and kept on the device
as uint8; every pending cell corrupts and classifies the chunk before the next one is read.
On CUDA a cell's next batch is corrupted on a side stream while the model classifies the current
one, and nothing in the loop waits for the device until the cell's counts are read.
Each (cell, chunk) goes into the results store as soon as it is counted, so rerunning the same
command skips what is done and an interruption loses at most one cell of one chunk. Per-image
random streams make the numbers independent of batch size, chunk size, device count and resume
point. Every check runs before the first cell, so a refused configuration leaves the store as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..choices import DECODERS
from ..corruptions import ALL_PROTOCOLS, BACKENDS, C_BAR_PROTOCOLS, benchmark_names, corrupt, names
from ..corruptions.api import check_name, check_name_in_protocol, is_severity, severity_hint
from ..corruptions.params import MIN_SIZE
from ..data.batches import DeviceDecoding, ImageBatches, batches_of, read_ahead, staged
from ..data.sources import DatasetError, EvalSource, ImageFiles
from ..devices import as_model_input, autocast, effective_precision, prepare, to_float_images
from ..distributed import DistContext, barrier, broadcast, init_distributed
from ..models.zoo import file_sha256
from ..progress import Progress, progress_bar
from ..results import DEFAULT_DB, AskedCells, Cell, CellPart, ResultStore, Run, write_json
from ..rng import image_streams
from ..summaries import CLEAN, pack_flags, summarize_corruptions, unpack_flags
from ..version import __version__
from .common import (
    DEFAULT_WORKERS,
    EvaluationError,
    Tally,
    check_run_options,
    data_identity,
    load_eval_model,
    open_checked_source,
    open_store,
    selected_indices,
    start_run,
)
from .parts import add_part, check_shard, pending, within_shard
from .perturbation import find_baseline


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
    corruptions: Sequence[str] | None = None  # None: the protocol's benchmark set (common; a C-bar protocol's 10)
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
    chunk_size: int | None = None  # images decoded at once; None: what fits the device (chunk_size)
    decode: str = "pil"  # or "device": JPEGs decoded in batches on the device (nvJPEG on CUDA)
    compile: bool = False  # torch.compile the model
    shard: tuple[int, int] | None = None  # (k, n): only the k-th of n blocks of images (not part of the identity)
    labels: Path | None = None  # a flat folder's labels file (the official ImageNet validation layout)
    baseline_run: str | None = None  # C-bar: a stored run (id, --name or model) that mCE is relative to


def default_protocol(input_size: int) -> str:
    """imagenet-c for 224-px models, cifar10-c for 32-px ones: the generators they were made for."""
    return "imagenet-c" if input_size >= MIN_SIZE["imagenet-c"] else "cifar10-c"


def check_config(config: CorruptionEvalConfig) -> None:
    if config.corruptions is not None and not config.corruptions:
        raise EvaluationError("--corruptions selects no corruption; pass names (gaussian_noise,fog) or a subset "
                              "(common, all, noise, ..., imagenet-c-bar)")
    for name in config.corruptions or ():
        check_name(name)
    if not config.severities:
        raise EvaluationError("--severities selects no severity; pass some of 1,2,3,4,5")
    for severity in config.severities:
        if not is_severity(severity):
            raise EvaluationError(f"--severities: {severity!r} is not a severity; severities are 1 to 5"
                                  f"{severity_hint(config.protocol)}")
    if config.protocol is not None and config.protocol not in ALL_PROTOCOLS:
        raise EvaluationError(f"--protocol {config.protocol!r}: choose one of {', '.join(ALL_PROTOCOLS)}")
    _check_c_bar(config)
    if config.backend not in BACKENDS:
        raise EvaluationError(f"--backend {config.backend!r}: choose one of {', '.join(BACKENDS)}")
    if config.source == "generated" and config.backend == "reference" and config.protocol != "imagecorruptions":
        raise EvaluationError("--backend reference runs the imagecorruptions package: use it with "
                              "--protocol imagecorruptions")
    check_run_options(limit=config.limit, batch_size=config.batch_size, workers=config.workers,
                      num_classes=config.num_classes, precision=config.precision, json=config.json)
    if config.chunk_size is not None and config.chunk_size < 1:
        raise EvaluationError(f"--chunk-size {config.chunk_size}: pass a positive number of images")
    if config.decode not in DECODERS:
        raise EvaluationError(f"--decode {config.decode!r}: choose one of {', '.join(DECODERS)}")
    check_shard(config.shard)


def _check_c_bar(config: CorruptionEvalConfig) -> None:
    """C-bar corruptions are generated on the fly by their own protocol, and only they are
    normalised by a stored baseline run."""
    c_bar = [name for name in config.corruptions or () if name not in names("all")]
    if config.protocol in C_BAR_PROTOCOLS:
        if config.source != "generated":
            raise EvaluationError(f"--protocol {config.protocol} generates its corruptions on the fly: use --source "
                                  "generated (the default) with the clean images as --data")
        for name in config.corruptions or ():
            check_name_in_protocol(name, config.protocol)
    elif c_bar:
        raise EvaluationError(f"--corruptions {', '.join(c_bar)}: C-bar corruptions need --protocol "
                              f"{' or '.join(C_BAR_PROTOCOLS)}")
    elif config.protocol is not None and config.corruptions:
        for name in config.corruptions:
            check_name_in_protocol(name, config.protocol)
    if config.baseline_run and config.protocol not in C_BAR_PROTOCOLS:
        raise EvaluationError("--baseline-run normalises the mCE of a C-bar run (--protocol "
                              f"{' or '.join(C_BAR_PROTOCOLS)}); ImageNet-C runs are normalised by AlexNet's "
                              "published errors")


def find_c_bar_baseline(store: ResultStore, selector: str, runs: Sequence[Run], other_than: Run | None = None) -> Run:
    """The stored corruption run a C-bar run's mCE is relative to (``find_baseline``), which must
    be of the same protocol: another protocol has none of its cells."""
    protocols = {run.config.get("protocol") for run in runs}

    def refuse(other: Run) -> EvaluationError:
        return EvaluationError(
            f"--baseline-run {selector!r}: run {other.id} is a {other.config.get('protocol') or 'released-files'} "
            f"run, not {' / '.join(sorted(p for p in protocols if p))}; evaluate the baseline model with the same "
            "--protocol first")

    named = [r for r in store.runs("corruption") if selector in (str(r.id), r.name, r.model)
             and (other_than is None or r.id != other_than.id)]
    if named and not any(r.config.get("protocol") in protocols for r in named):
        raise refuse(named[-1])
    chosen = find_baseline(store, selector, runs, other_than, kind="corruption")
    if chosen.config.get("protocol") not in protocols:
        raise refuse(chosen)
    return chosen


def c_bar_baseline_of(store: ResultStore, selector: str, runs: Sequence[Run]) -> Run | None:
    """`table --baseline-run`: the baseline of the C-bar runs among ``runs``, None when there are none."""
    c_bar = [run for run in runs if run.config.get("protocol") in C_BAR_PROTOCOLS]
    return find_c_bar_baseline(store, selector, c_bar) if c_bar else None


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
        "decode": config.decode,  # the device path's pixels differ slightly from PIL's (docs/eval-corruption.md)
        "compile": config.compile,
        "version": __version__,
    }


def chunk_size(config: CorruptionEvalConfig, input_size: int, device: torch.device) -> int:
    """Images decoded at once: ``--chunk-size``, else an eighth of the free GPU memory (up to
    three chunks are in memory at once: the one running, one read ahead, one being read; the
    full 50,000-image ImageNet val at 224 px is 7.5 GB) or 1 GiB of host memory; rounded up to
    whole batches, so the batches (and with them every floating-point sum the model makes) are
    the same whatever the chunk size."""
    if config.chunk_size is not None:
        size = config.chunk_size
    else:
        budget = torch.cuda.mem_get_info(device)[0] // 8 if device.type == "cuda" else 2**30
        size = budget // (3 * input_size * input_size)
    return max(1, -(-size // config.batch_size)) * config.batch_size


@dataclass
class _Chunk:
    """This rank's share of a chunk: positions, and for on-the-fly sources its clean images
    decoded once (uint8 on the device), their labels and dataset indices, and the unread ones."""

    positions: np.ndarray
    images: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    index: torch.Tensor | None = None
    device_index: torch.Tensor | None = None  # ``index`` on the device, for the images' random streams
    unread: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


class _ChunkRunner:
    """Evaluates this rank's share of one chunk of images in every cell that still needs it.

    On-the-fly sources decode the chunk's clean images once and keep them on the device as
    uint8; every cell corrupts them from there. Released sources read each cell's own files.
    """

    def __init__(self, config: CorruptionEvalConfig, model: nn.Module, source: EvalSource, indices: list[int],
                 ctx: DistContext, precision: str) -> None:
        self.config, self.model, self.source, self.ctx, self.precision = config, model, source, ctx, precision
        self.indices = np.asarray(indices, dtype=np.int64)  # dataset index of each position
        self.positions = {index: p for p, index in enumerate(indices)}

    def _batches(self, dataset, positions: np.ndarray, corrupted: bool) -> ImageBatches:
        decoding = None
        if self.config.decode == "device" and isinstance(dataset, ImageFiles):
            decoding = DeviceDecoding(self.source.geometry(corrupted), self.source.input_size)
        c = self.config
        return ImageBatches(dataset, self.indices[positions].tolist(), c.batch_size, c.workers, self.ctx, c.strict,
                            decoding)

    def read(self, positions: np.ndarray) -> _Chunk:
        """This rank's share of a chunk, its clean images decoded once (on-the-fly sources only)."""
        chunk = _Chunk(positions)
        if not self.source.on_the_fly:
            return chunk
        batches = self._batches(self.source.clean, positions, corrupted=False)
        read = batches.gather()
        if read is not None:
            chunk.images, chunk.labels, chunk.index = read
            chunk.device_index = chunk.index.to(self.ctx.device)
        chunk.unread = np.array(batches.unread, dtype=np.int64)
        return chunk

    def chunks(self, work: np.ndarray, size: int):
        """The chunks of ``work`` (positions) in order, the next one read while the current one runs."""
        return read_ahead((self.read(work[start : start + size]) for start in range(0, len(work), size)),
                          self.ctx.device, depth=1)

    def _logits(self, images: torch.Tensor) -> torch.Tensor:
        with autocast(self.precision, self.ctx.device):
            return self.model(as_model_input(images)).float()

    @torch.inference_mode()
    def run(self, name: str, level: str, chunk: _Chunk, positions: np.ndarray, bar: Progress) -> CellPart:
        """The counts of cell (name, level) over the chunk's ``positions`` (all ranks together)."""
        config, device, tally = self.config, self.ctx.device, Tally()
        if self.source.on_the_fly:
            severity, wanted = int(level), self.indices[positions]
            batches = ()  # none when nothing of this rank's share could be read
            if chunk.images is not None:
                selected = torch.from_numpy(np.isin(chunk.index.numpy(), wanted))
                columns = (chunk.images, chunk.labels, chunk.index, chunk.device_index)
                batches = batches_of(columns, selected, config.batch_size)

            def corrupted(batch: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
                images, labels, index, device_index = batch
                images = to_float_images(images, device)
                if name != "clean":  # the streams come from indices already on the device: no copy, no wait
                    streams = image_streams(config.seed, device_index, name, severity, device)
                    images = corrupt(images, name, severity, protocol=config.protocol, backend=config.backend,
                                     generator=streams, check_input=False)
                return images, labels, index

            for images, labels, index in staged(batches, corrupted, device):
                tally.add(self._logits(images), labels, index)
                bar.update(len(index) * self.ctx.world)
            skipped = int(np.isin(chunk.unread, wanted).sum())
        else:
            dataset = self.source.clean if name == "clean" else self.source.cell(name, int(level))
            batches = self._batches(dataset, positions, corrupted=name != "clean")
            for images, labels, index in batches:
                tally.add(self._logits(to_float_images(images, device)), labels, index)
                bar.update(len(index) * self.ctx.world)
            skipped = batches.skipped
        (n, top1, top5, skipped), flags = tally.counts(skipped, self.positions, self.ctx)
        covered = np.zeros(len(self.indices), dtype=bool)
        covered[positions] = True
        return CellPart(name, level, n, top1, top5, skipped, pack_flags(flags), pack_flags(covered))


def merge_parts(name: str, level: str, parts: list[CellPart], size: int) -> Cell | None:
    """One cell from parts that cover all its ``size`` images: counts add up, outcomes join.
    Parts that overlap ones already taken (two processes ran the same images) are left out;
    None when the rest leaves images uncovered."""
    taken, covered = [], np.zeros(size, dtype=bool)
    for part in parts:
        bits = unpack_flags(part.covered)[:size]
        if not (bits & covered).any():
            taken.append(part)
            covered |= bits
    if not covered.all():
        return None
    correct = np.logical_or.reduce([unpack_flags(part.mask)[:size] for part in taken])
    return Cell(name, level, sum(p.n for p in taken), sum(p.top1_errors for p in taken),
                sum(p.top5_errors for p in taken), sum(p.skipped for p in taken), mask=pack_flags(correct))


def evaluate_corruptions(config: CorruptionEvalConfig, progress: bool = True) -> dict:
    """Run (or resume) a corruption evaluation; returns the run summary and the stored run's
    ``run_id`` (rank 0; others get {}).

    The images are processed in chunks; each (cell, chunk) is stored as soon as it is counted
    and a cell becomes one stored cell once its chunks cover every image, so an interruption
    loses at most the cell in flight on one chunk, whatever the chunk size of the rerun.
    """
    check_config(config)
    ctx = init_distributed(config.device)
    precision = effective_precision(config.precision, ctx.device)
    model = prepare(load_eval_model(config.model, config.num_classes, config.checkpoint, config.seed), ctx.device)
    source = open_checked_source(config.source, config.data, model, config.model, config.clean_data,
                                 config.class_index, config.labels)
    if config.protocol is None:
        config = replace(config, protocol=default_protocol(source.input_size))
    if config.corruptions is None:
        config = replace(config, corruptions=benchmark_names(config.protocol))
    _check_source(config, source)
    if config.compile:
        model = torch.compile(model)
    indices = selected_indices(source, config.limit, config.seed)
    size = len(indices)
    sha = file_sha256(config.checkpoint) if config.checkpoint else None
    identity = run_identity(config, source, sha, precision)
    if config.baseline_run and not Path(config.db).is_file():
        raise EvaluationError(f"--baseline-run {config.baseline_run}: --db {config.db} does not exist, so it holds no "
                              "baseline run; pass the --db of the baseline's evaluation")
    store = open_store(config.db, ctx)
    baseline = None
    if store and config.baseline_run:  # chosen, or refused, before the run is stored
        this = store.existing_run("corruption", identity) or Run(-1, "corruption", config.model, identity)
        baseline = find_c_bar_baseline(store, config.baseline_run, [this], other_than=this)
    run = start_run(store, "corruption", config.model, identity, config.name) if store else None
    wanted = [CLEAN] * (source.clean is not None) + [(c, str(s)) for c in config.corruptions for s in config.severities]
    todo, stored = pending(store, run, wanted, size, merge_parts) if store else (None, {})
    todo = broadcast(within_shard(todo, size, config.shard) if store else None, ctx)
    work = np.flatnonzero(np.logical_or.reduce(list(todo.values()))) if todo else np.zeros(0, dtype=np.int64)
    runner = _ChunkRunner(config, model, source, indices, ctx, precision)
    bar = progress_bar(int(sum(t.sum() for t in todo.values())), "eval-corruption", progress and ctx.is_main)
    step = broadcast(chunk_size(config, source.input_size, ctx.device), ctx)  # rank 0's: ranks split alike
    for chunk in runner.chunks(work, step):
        for cell, missing in todo.items():
            positions = chunk.positions[missing[chunk.positions]]
            if not len(positions):
                continue
            bar.set_postfix_str(f"{cell[0]} {cell[1]}")
            part = runner.run(*cell, chunk, positions, bar)
            if store:
                add_part(store, run, part, stored, size, merge_parts)
            barrier(ctx)
    bar.close()
    if not store or config.shard:  # a shard's cells become whole in the merged store
        return {"run_id": run.id} if store else {}
    asked = AskedCells(store, run.id, wanted)
    summary = summarize_corruptions(run, asked.cells(run), config.corruptions, baseline=baseline,
                                    baseline_cells=store.cells(baseline) if baseline else None)
    if config.json:
        write_json(config.json, summary)
    return {**summary, "run_id": run.id, "asked": wanted}
