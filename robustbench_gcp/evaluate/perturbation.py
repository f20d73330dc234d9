"""The perturbation evaluation: flip probability and top-5 distance per (perturbation, difficulty).

Videos are processed in chunks. On-the-fly sources decode a chunk's clean images once and
generate every pending sequence from them on the device; released sources read each
sequence's files. Each (cell, chunk) goes into the results store as soon as it is counted, as
per-video integer counts, so rerunning the same command skips what is done, an interruption
loses at most one sequence of one chunk, and torchrun ranks add up exactly. Non-noise
difficulties share one sequence: difficulty d compares its frames d apart.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from ..data.batches import ImageBatches, UnreadableImages, batches_of
from ..data.folders import DatasetError
from ..data.sources import check_image_sizes, class_index_digest, read_class_index
from ..data.videos import VIDEO_SOURCES, VideoSource, open_video_source
from ..devices import as_model_input, autocast, effective_precision, prepare, to_float_images
from ..distributed import DistContext, barrier, broadcast, init_distributed, sum_counts
from ..models.zoo import file_sha256
from ..perturbations import PROTOCOLS, names, perturb_to_uint8, sequence_length, sequence_level, sequence_streams
from ..perturbations import spec as protocol_spec
from ..perturbations.api import check_name
from ..progress import Progress, progress_bar
from ..results import DEFAULT_DB, AskedCells, Cell, CellPart, ResultStore, Run, write_json
from ..stability import (
    DEFAULT_DIFFICULTIES,
    DIFFICULTIES,
    NOISE_PERTURBATIONS,
    counts_from_bytes,
    counts_to_bytes,
    ranked_classes,
    video_counts,
)
from ..summaries import pack_flags, summarize_perturbations, unpack_flags
from ..version import __version__
from .common import (
    DEFAULT_WORKERS,
    EvaluationError,
    check_run_options,
    load_eval_model,
    model_classes,
    open_store,
    start_run,
)
from .parts import add_part, check_shard, pending, within_shard

KIND = "perturbation"


@dataclass
class PerturbationEvalConfig:
    """Everything ``gcp-robust eval-perturbation`` takes."""

    model: str
    data: Path
    checkpoint: Path | None = None
    num_classes: int | None = None
    source: str = "generated"
    protocol: str | None = None  # None: the released source's, else the one that fits the model's input size
    perturbations: str | Sequence[str] = "test"  # names, or a subset of the protocol: test, validation, all
    difficulties: Sequence[int] = DEFAULT_DIFFICULTIES  # 1: the reference evaluators' and the published numbers'
    limit: int | None = None  # videos
    seed: int = 0
    batch_size: int = 128  # frames per forward pass
    workers: int = DEFAULT_WORKERS
    device: str | None = None
    precision: str = "fp32"  # or bf16 autocast on CUDA (faster; near-tie frames may flip otherwise)
    class_index: Path | None = None
    db: Path = DEFAULT_DB
    json: Path | None = None
    name: str | None = None
    baseline_run: str | None = None  # a run id, --name label or model name of a stored perturbation run
    chunk_size: int = 256  # videos per stored part
    shard: tuple[int, int] | None = None  # (k, n): only the k-th of n blocks of videos (not part of the identity)


def resolved(config: PerturbationEvalConfig, input_size: int) -> PerturbationEvalConfig:
    """The configuration with its protocol (a released source's own, else the one whose frames
    have the model's input size), its perturbations and its difficulties (each once) spelled out."""
    protocol = config.protocol or (config.source if config.source != "generated" else None)
    if protocol is None:
        protocol = next((p for p in PROTOCOLS if protocol_spec(p).size == input_size), None)
    sizes = {p: protocol_spec(p).size for p in PROTOCOLS}
    if protocol is None:
        known = ", ".join(f"{p} {size} px" for p, size in sizes.items())
        raise EvaluationError(f"{config.model} takes {input_size}-px images but the perturbation protocols make "
                              f"frames of fixed sizes ({known}); evaluate a model of one of those input sizes")
    if sizes[protocol] != input_size:
        raise EvaluationError(f"{config.model} takes {input_size}-px images but {protocol} frames are "
                              f"{sizes[protocol]} px; evaluate a {sizes[protocol]}-px model on them")
    chosen = names(config.perturbations, protocol) if isinstance(config.perturbations, str) else config.perturbations
    return replace(config, protocol=protocol, perturbations=list(dict.fromkeys(chosen)),
                   difficulties=sorted(set(config.difficulties)))


def check_config(config: PerturbationEvalConfig) -> None:
    if not config.perturbations:
        raise EvaluationError("--perturbations selects no perturbation; pass names (rotate,snow) or a subset "
                              "(test, validation, all)")
    if isinstance(config.perturbations, str):
        names(config.perturbations)
    else:
        for name in config.perturbations:
            check_name(name)
    if not config.difficulties or any(d not in DIFFICULTIES for d in config.difficulties):
        raise EvaluationError(f"--difficulties {list(config.difficulties)}: pass some of 1,2,3")
    if config.source not in VIDEO_SOURCES:
        raise EvaluationError(f"--source {config.source!r}: choose one of {', '.join(VIDEO_SOURCES)}")
    if config.protocol is not None and config.protocol not in PROTOCOLS:
        raise EvaluationError(f"--protocol {config.protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    if config.source != "generated" and config.protocol not in (None, config.source):
        raise EvaluationError(f"--source {config.source} holds {config.source} sequences: leave out --protocol "
                              f"{config.protocol}, or generate that protocol's sequences with --source generated")
    check_run_options(limit=config.limit, batch_size=config.batch_size, workers=config.workers,
                      num_classes=config.num_classes, precision=config.precision, json=config.json)
    if config.chunk_size < 1:
        raise EvaluationError(f"--chunk-size {config.chunk_size}: pass a positive number of videos")
    check_shard(config.shard)


def _sequences(config: PerturbationEvalConfig) -> dict[tuple[str, int], list[int]]:
    """(perturbation, generated sequence) → the difficulties read from it."""
    sequences: dict[tuple[str, int], list[int]] = {}
    for name in config.perturbations:
        for difficulty in config.difficulties:
            sequences.setdefault((name, sequence_level(name, difficulty)), []).append(difficulty)
    return sequences


def _same_data(a: Run, b: Run) -> bool:
    return all(a.config.get(key) == b.config.get(key) for key in ("protocol", "dataset", "limit"))


def find_baseline(store: ResultStore, selector: str, runs: Sequence[Run] = (), other_than: Run | None = None,
                  kind: str = KIND) -> Run:
    """The stored run of ``kind`` that ``runs`` are normalised by (perturbation: FR, mFR, mT5D;
    corruption: the C-bar mCE): by id, --name label or model name, never ``other_than`` (the run
    being evaluated); of several, the latest on the same data, protocol and --limit as all of
    ``runs``, else the latest, with a warning. The evaluations and `table` all choose with this."""
    candidates = [r for r in store.runs(kind) if selector in (str(r.id), r.name, r.model)
                  and (other_than is None or r.id != other_than.id)]
    if not candidates:
        other = "other " if other_than is not None else ""
        raise EvaluationError(
            f"--baseline-run {selector!r}: {store.path} has no {other}{kind} run with that id, name or model "
            f"(`gcp-robust runs` lists them); evaluate the baseline first (e.g. gcp-robust eval-{kind} --model "
            "torchvision:alexnet --checkpoint alexnet-owt-7be5be79.pth with the same data"
            f"{' and --protocol' if kind == 'corruption' else ''})")
    same = [r for r in candidates if all(_same_data(r, run) for run in runs)]
    chosen = (same or candidates)[-1]
    if not same:
        differ = [str(run.id) for run in runs if not _same_data(chosen, run)]
        whom = "this run" if other_than is not None else f"run{'s' if len(differ) > 1 else ''} {', '.join(differ)}"
        warnings.warn(f"baseline run {chosen.id} evaluated other data, protocol or --limit than {whom}; "
                      "its rates are compared as they are", stacklevel=3)
    return chosen


class _SequenceRunner:
    """Classifies this rank's videos of one chunk under one sequence and counts every pending difficulty."""

    def __init__(self, config: PerturbationEvalConfig, model: nn.Module, source: VideoSource, ctx: DistContext,
                 precision: str) -> None:
        self.config, self.model, self.source, self.ctx, self.precision = config, model, source, ctx, precision
        self.k = min(5, model_classes(model))

    @torch.inference_mode()
    def top_classes(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames (B, T, 3, H, W) → the 5 best classes of every frame (B, T, 5)."""
        flat = frames.flatten(0, 1)
        ranked = []
        for start in range(0, len(flat), self.config.batch_size):
            batch = to_float_images(flat[start : start + self.config.batch_size], self.ctx.device)
            with autocast(self.precision, self.ctx.device):
                logits = self.model(as_model_input(batch)).float()
            ranked.append(ranked_classes(logits, self.k))
        return torch.cat(ranked).view(*frames.shape[:2], self.k)

    def clean_images(self, chunk: np.ndarray) -> tuple[torch.Tensor, torch.Tensor] | None:
        """This rank's clean images of a chunk (dataset indices), decoded once: (uint8 images, indices)."""
        c = self.config
        batches = ImageBatches(self.source.clean, chunk.tolist(), c.batch_size, c.workers, self.ctx, strict=True)
        try:
            read = batches.gather()
        except UnreadableImages as error:
            raise EvaluationError(f"{error.paths[0]} cannot be decoded as an image; remove or replace it") from None
        return None if read is None else (read[0], read[2])

    def videos(self, name: str, level: int, chunk: np.ndarray,
               clean: tuple[torch.Tensor, torch.Tensor] | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(uint8 frames (B, T, 3, H, W) on the device, dataset indices) of this rank's videos
        among ``chunk`` (dataset indices): generated from the ``clean`` images of ``chunk``, or read."""
        frames = sequence_length(name, self.config.protocol)
        per_batch = max(1, self.config.batch_size // frames)
        device = self.ctx.device
        if self.source.on_the_fly:
            if clean is None:  # none of this rank's share
                return
            in_chunk = torch.from_numpy(np.isin(clean[1].numpy(), chunk))
            for images, index in batches_of(clean, in_chunk, per_batch):
                streams = sequence_streams(self.config.seed, index, name, level, device)
                yield perturb_to_uint8(to_float_images(images, device), name, protocol=self.config.protocol,
                                       difficulty=level, generator=streams), index
            return
        dataset = self.source.videos(name, level)
        share = Subset(dataset, chunk[self.ctx.rank :: self.ctx.world].tolist())
        loader = DataLoader(share, batch_size=per_batch, num_workers=self.config.workers)
        for frames_batch, _, index, problems in loader:
            problem = next((p for p in problems if p), None)
            if problem:
                raise EvaluationError(f"{problem}; replace the file (or rerun the export) and rerun")
            yield frames_batch.to(device, non_blocking=True), index

    def run(self, name: str, level: int, difficulties: list[int], chunk: np.ndarray, positions: dict[int, int],
            clean: tuple[torch.Tensor, torch.Tensor] | None, bar: Progress) -> dict[int, np.ndarray]:
        """Per-video counts (len(positions) × 3, zeros where not evaluated) per difficulty, all ranks summed,
        of the videos ``chunk`` (dataset indices); ``clean``: the clean images the chunk's videos are
        generated from (on-the-fly sources: of the whole chunk, or more)."""
        counts = {d: np.zeros((len(positions), 3), dtype=np.int64) for d in difficulties}
        noise = name in NOISE_PERTURBATIONS
        for frames, index in self.videos(name, level, chunk, clean):
            top5 = self.top_classes(frames)
            rows = [positions[int(i)] for i in index]
            for difficulty in difficulties:
                counts[difficulty][rows] = video_counts(top5, difficulty, noise).cpu().numpy()
            bar.update(len(rows) * self.ctx.world)
        if self.ctx.world > 1:
            for difficulty in difficulties:
                local = counts[difficulty][[positions[int(i)] for i in chunk]]
                summed = np.asarray(sum_counts(local.reshape(-1).tolist(), self.ctx)).reshape(-1, 3)
                counts[difficulty][[positions[int(i)] for i in chunk]] = summed
        return counts


def merge_parts(name: str, level: str, parts: list[CellPart], size: int) -> Cell | None:
    """One cell from parts that cover all ``size`` videos (overlapping parts are left out); None
    when the rest leaves videos uncovered."""
    covered, counts = np.zeros(size, dtype=bool), np.zeros((size, 3), dtype=np.int64)
    for part in parts:
        bits = unpack_flags(part.covered)[:size]
        if not (bits & covered).any():
            covered |= bits
            counts += counts_from_bytes(part.mask)
    if not covered.all():
        return None
    return Cell(name, level, size, int(counts[:, 0].sum()), int(counts[:, 1].sum()), 0, mask=counts_to_bytes(counts))


def _open_source(config: PerturbationEvalConfig, input_size: int) -> tuple[VideoSource, list[int]]:
    """The opened source, every sequence checked, and the videos every cell evaluates."""
    try:
        index = read_class_index(config.class_index) if config.class_index else None
        source = open_video_source(config.source, config.data, config.protocol, input_size, index)
        for name, level in _sequences(config):
            source.check_sequence(name, level)
        indices = source.subset(config.limit, config.seed)
        if source.on_the_fly and protocol_spec(config.protocol).resize is None:  # 32-px photos are not resized
            check_image_sizes(source.clean, indices, protocol_spec(config.protocol).size)
    except DatasetError as error:
        raise EvaluationError(str(error)) from None
    return source, indices


def run_identity(config: PerturbationEvalConfig, source: VideoSource, checkpoint_sha256: str | None,
                 precision: str, classes: int) -> dict:
    """What makes two runs the same run (and so what a rerun may resume)."""
    return {
        "model": config.model, "num_classes": config.num_classes, "checkpoint_sha256": checkpoint_sha256,
        "model_classes": classes, "dataset": str(Path(config.data).resolve()),
        "class_index_sha256": class_index_digest(source.class_index),
        "dataset_size": len(source.base_targets), "input_size": source.input_size,
        "fingerprint": source.fingerprint, "source": config.source, "protocol": config.protocol,
        "limit": config.limit, "seed": config.seed, "precision": precision, "version": __version__,
    }


def evaluate_perturbations(config: PerturbationEvalConfig, progress: bool = True) -> dict:
    """Run (or resume) a perturbation evaluation; returns the run summary with ``run_id`` (rank 0;
    others get {})."""
    check_config(config)
    ctx = init_distributed(config.device)
    precision = effective_precision(config.precision, ctx.device)
    model = prepare(load_eval_model(config.model, config.num_classes, config.checkpoint, config.seed), ctx.device)
    input_size = model.architecture.input_size
    config = resolved(config, input_size)
    source, indices = _open_source(config, input_size)
    size, positions = len(indices), {index: p for p, index in enumerate(indices)}
    sha = file_sha256(config.checkpoint) if config.checkpoint else None
    identity = run_identity(config, source, sha, precision, model_classes(model))
    if config.baseline_run and not Path(config.db).is_file():
        raise EvaluationError(f"--baseline-run {config.baseline_run}: --db {config.db} does not exist, so it holds no "
                              "baseline run; pass the --db of the baseline's evaluation")
    store = open_store(config.db, ctx)
    baseline = None
    if store and config.baseline_run:  # chosen, or refused, before the run is stored
        this = store.existing_run(KIND, identity) or Run(-1, KIND, config.model, identity)
        baseline = find_baseline(store, config.baseline_run, [this], other_than=this)
    run = start_run(store, KIND, config.model, identity, config.name) if store else None
    sequences = _sequences(config)
    cell_keys = [(name, str(d)) for (name, _), ds in sequences.items() for d in ds]
    todo, stored = pending(store, run, cell_keys, size, merge_parts) if store else (None, {})
    todo = broadcast(within_shard(todo, size, config.shard) if store else None, ctx)
    runner = _SequenceRunner(config, model, source, ctx, precision)
    work = np.flatnonzero(np.logical_or.reduce(list(todo.values()))) if todo else np.zeros(0, dtype=np.int64)
    left = {key: ds for key, ds in sequences.items() if any((key[0], str(d)) in todo for d in ds)}
    total = sum(int(np.logical_or.reduce([todo[key[0], str(d)] for d in ds if (key[0], str(d)) in todo]).sum())
                for key, ds in left.items())
    bar = progress_bar(total, "eval-perturbation", progress and ctx.is_main)
    for start in range(0, len(work), config.chunk_size):
        chunk_positions = work[start : start + config.chunk_size]
        clean = None
        for (name, level), difficulties in left.items():
            missing = {d: todo[name, str(d)][chunk_positions] for d in difficulties
                       if (name, str(d)) in todo and todo[name, str(d)][chunk_positions].any()}
            needed = chunk_positions[np.logical_or.reduce(list(missing.values()))] if missing else chunk_positions[:0]
            if not len(needed):
                continue
            chunk = np.asarray(indices)[needed]
            if source.on_the_fly and clean is None:  # decoded once per chunk, for every sequence
                clean = runner.clean_images(np.asarray(indices)[chunk_positions])
            bar.set_postfix_str(name if level == 1 else f"{name} {level}")
            counts = runner.run(name, level, list(missing), chunk, positions, clean, bar)
            if store:
                for difficulty, flags in missing.items():
                    covered = np.zeros(size, dtype=bool)
                    covered[chunk_positions[flags]] = True
                    add_part(store, run, _part(name, difficulty, counts[difficulty], covered), stored, size,
                             merge_parts)
            barrier(ctx)
    bar.close()
    if not store or config.shard:  # a shard's cells become whole in the merged store
        return {"run_id": run.id} if store else {}
    baseline_cells = store.cells(baseline) if baseline else None
    summary = summarize_perturbations(run, AskedCells(store, run.id, cell_keys).cells(run), config.perturbations,
                                      config.difficulties, baseline, baseline_cells)
    if config.json:
        write_json(config.json, summary)
    return {**summary, "run_id": run.id, "asked": cell_keys}


def _part(name: str, difficulty: int, counts: np.ndarray, covered: np.ndarray) -> CellPart:
    """A cell's counts over the ``covered`` videos (the others' rows zero)."""
    return CellPart(name, str(difficulty), int(covered.sum()), int(counts[covered, 0].sum()),
                    int(counts[covered, 1].sum()), 0, counts_to_bytes(np.where(covered[:, None], counts, 0)),
                    pack_flags(covered))
