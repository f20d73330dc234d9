"""The corruption evaluation: clean error and top-1/top-5 errors per (corruption, severity).

Each cell's counts go into the results store as soon as the cell is done, so rerunning the same
command skips finished cells and an interruption loses at most the cell in flight. Per-image
seeds make the numbers independent of batch size, device count and resume point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from .. import __version__
from ..corruptions import corrupt, names
from ..corruptions.seeding import image_generators
from ..data.sources import EvalSource
from ..metrics import mce, mean_error, relative_mce
from ..models.zoo import file_sha256
from ..results import DEFAULT_DB, Cell, ResultStore, Run, write_json
from .clean import Counts, to_float_images
from .common import EvaluationError, as_model_input, load_eval_model, open_checked_source, prepare
from .distributed import DistContext, barrier, broadcast, init_distributed, sum_counts

CLEAN = ("clean", "0")


@dataclass
class CorruptionEvalConfig:
    """Everything ``gcp-robust eval-corruption`` takes."""

    model: str
    data: Path
    checkpoint: Path | None = None
    num_classes: int | None = None
    source: str = "generated"
    protocol: str = "imagenet-c"
    backend: str = "native"
    corruptions: Sequence[str] = field(default_factory=lambda: names("common"))
    severities: Sequence[int] = (1, 2, 3, 4, 5)
    limit: int | None = None
    seed: int = 0
    batch_size: int = 128
    workers: int = 4
    device: str | None = None
    autocast: bool = True  # bf16 on CUDA; the CPU always runs float32
    strict: bool = False
    clean_data: Path | None = None
    class_index: Path | None = None
    db: Path = DEFAULT_DB
    json: Path | None = None


def run_identity(config: CorruptionEvalConfig, source: EvalSource, checkpoint_sha256: str | None,
                 precision: str) -> dict:
    """What makes two runs the same run (and so what a rerun may resume)."""
    on_the_fly = source.on_the_fly
    return {
        "model": config.model,
        "num_classes": config.num_classes,
        "checkpoint_sha256": checkpoint_sha256,
        "dataset": str(Path(config.data).resolve()),
        "dataset_size": len(source.base_targets),
        "clean_data": str(Path(config.clean_data).resolve()) if config.clean_data else None,
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

    def __init__(self, config: CorruptionEvalConfig, model: nn.Module, source: EvalSource, ctx: DistContext,
                 precision: str) -> None:
        self.config, self.model, self.source, self.ctx = config, model, source, ctx
        self.autocast = dict(device_type=ctx.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def _loader(self, dataset, indices: list[int]) -> DataLoader:
        mine = indices[self.ctx.rank :: self.ctx.world]
        return DataLoader(Subset(dataset, mine), batch_size=self.config.batch_size, num_workers=self.config.workers,
                          pin_memory=self.ctx.device.type == "cuda", persistent_workers=False)

    @torch.inference_mode()
    def run(self, name: str, level: str, indices: list[int], bar: tqdm) -> Cell:
        severity = int(level)
        dataset = self.source.clean if name == "clean" else self.source.cell(name, severity)
        if dataset is None:
            raise EvaluationError("the clean error needs clean images: pass --clean-data with the clean val set")
        counts, skipped = Counts(), 0
        for images, labels, index, readable in self._loader(dataset, indices):
            if not readable.all():
                if self.config.strict:
                    bad = index[~readable].tolist()
                    paths = [dataset.samples[i][0] for i in bad] if hasattr(dataset, "samples") else bad
                    raise EvaluationError(f"unreadable images: {paths[:3]} (drop --strict to skip and count them)")
                skipped += int((~readable).sum())
                images, labels, index = images[readable], labels[readable], index[readable]
            batch = to_float_images(images, self.ctx.device)
            if name != "clean" and self.source.on_the_fly:
                generators = image_generators(self.config.seed, index.tolist(), name, severity, self.ctx.device)
                batch = corrupt(batch, name, severity, protocol=self.config.protocol, backend=self.config.backend,
                                generator=generators)
            with torch.autocast(**self.autocast):
                logits = self.model(as_model_input(batch))
            counts.add(logits.float(), labels.to(self.ctx.device))
            bar.update(len(labels) * self.ctx.world)
        n, top1, top5, skipped = sum_counts([counts.n, counts.top1_errors, counts.top5_errors, skipped], self.ctx)
        return Cell(name, level, n, top1, top5, skipped)


def summarize(run: Run, cells: dict[tuple[str, str], Cell], corruptions: Sequence[str]) -> dict:
    """The JSON summary of a corruption run (percent; mCE fields null unless all 15×5 ran)."""
    def rate(cell: Cell | None) -> float | None:
        return round(100 * cell.top1_error, 4) if cell and cell.n else None

    clean = cells.get(CLEAN)
    errors = {
        name: [rate(cells.get((name, str(s)))) for s in range(1, 6)]
        for name in names("all") if name in corruptions or any(k[0] == name for k in cells)
    }
    fractions = {n: [None if e is None else e / 100 for e in v] for n, v in errors.items()}
    complete = all(n in errors and None not in errors[n] for n in names("common"))
    clean_error = rate(clean)
    ran = [n for n in names("common") if n in errors and any(e is not None for e in errors[n])]
    any_cell = next((c for c in cells.values()), None)
    return {
        "model": run.model,
        "checkpoint_sha256": run.config.get("checkpoint_sha256"),
        "dataset": run.config.get("dataset"),
        "protocol": run.config.get("protocol") or run.config.get("source"),
        "n": clean.n if clean else (any_cell.n if any_cell else 0),
        "clean_error": clean_error,
        "errors": errors,
        "mCE": round(mce(fractions), 4) if complete else None,
        "relative_mCE": round(relative_mce(fractions, clean_error / 100), 4) if complete and clean_error is not None
        else None,
        "mean_error": round(mean_error(fractions), 4) if ran else None,
        "skipped_unreadable": sum(c.skipped for c in cells.values()),
    }


def evaluate_corruptions(config: CorruptionEvalConfig, progress: bool = True) -> dict:
    """Run (or resume) a corruption evaluation; returns the run summary (rank 0; others get {})."""
    ctx = init_distributed(config.device)
    precision = "bf16" if config.autocast and ctx.device.type == "cuda" else "fp32"
    model = prepare(load_eval_model(config.model, config.num_classes, config.checkpoint, config.seed), ctx.device)
    source = open_checked_source(config.source, config.data, model, config.model, config.clean_data,
                                 config.class_index)
    sha = file_sha256(config.checkpoint) if config.checkpoint else None
    identity = run_identity(config, source, sha, precision)
    store = ResultStore(config.db) if ctx.is_main else None
    run = store.run("corruption", config.model, identity) if store else None
    wanted = [CLEAN] * (source.clean is not None) + [(c, str(s)) for c in config.corruptions for s in config.severities]
    pending = broadcast([cell for cell in wanted if cell not in store.cells(run)] if store else None, ctx)
    indices = source.subset(config.limit, config.seed)
    runner = _CellRunner(config, model, source, ctx, precision)
    bar = tqdm(total=len(pending) * len(indices), unit="img", disable=not (progress and ctx.is_main),
               desc="eval-corruption", dynamic_ncols=True)
    for name, level in pending:
        bar.set_postfix_str(f"{name} {level}")
        cell = runner.run(name, level, indices, bar)
        if store:
            store.add_cell(run, cell)
        barrier(ctx)
    bar.close()
    if not store:
        return {}
    summary = summarize(run, store.cells(run), config.corruptions)
    if config.json:
        write_json(config.json, summary)
    return summary

