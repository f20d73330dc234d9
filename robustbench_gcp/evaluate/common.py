"""What the evaluation loops share: checks before any cell runs, loading the model, opening and
checking the data, the run identity's data part, and the counting of a cell's outcomes."""

from __future__ import annotations

import functools
import os
import platform
import socket
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..choices import PRECISIONS
from ..data.batches import ImageBatches
from ..data.labels import labels_digest
from ..data.sources import DatasetError, EvalSource, class_index_digest, open_source, read_class_index
from ..devices import to_float_images
from ..distributed import DistContext, gather_flags, sum_counts
from ..errors import Error, counted
from ..fileio import check_output_file
from ..metrics import top_hits
from ..models import create_model
from ..progress import Progress
from ..results import Cell, Environment, ResultStore, Run
from ..summaries import pack_flags
from ..version import __version__

DEFAULT_WORKERS = min(4, os.cpu_count() or 1)


class EvaluationError(Error, ValueError):
    """An evaluation that cannot run as configured, with the fix in the message."""


def check_run_options(*, limit: int | None, batch_size: int, workers: int, num_classes: int | None,
                      precision: str, json: Path | None) -> None:
    """The options both evaluations take, checked before anything is loaded or stored."""
    if limit is not None and limit < 1:
        raise EvaluationError(f"--limit {limit}: pass a positive number of images, or leave it out for all")
    if batch_size < 1:
        raise EvaluationError(f"--batch-size {batch_size}: pass a positive batch size")
    if workers < 0:
        raise EvaluationError(f"--workers {workers}: pass 0 (load in the main process) or more")
    if num_classes is not None and num_classes < 1:
        raise EvaluationError(f"--num-classes {num_classes}: pass a positive number of classes")
    if precision not in PRECISIONS:
        raise EvaluationError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if json is not None:
        check_output_file(json, "--json")


def load_eval_model(name: str, num_classes: int | None, checkpoint: Path | None, seed: int) -> nn.Module:
    """The model in eval mode; without a checkpoint its random weights come from ``seed``."""
    if checkpoint is None:
        warnings.warn(f"no --checkpoint given: evaluating {name} with random weights (seed {seed})", stacklevel=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return create_model(name, num_classes=num_classes, checkpoint=checkpoint).eval()


def model_classes(model: nn.Module) -> int:
    """Size of the classifier, read from the layers (no forward pass): the last Linear layer (every
    zoo model), else a last 1×1 convolution that global pooling turns into the logits (SqueezeNet)."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    linear = [m for m in layers if isinstance(m, nn.Linear)]
    if linear:
        return linear[-1].out_features
    if layers and layers[-1].kernel_size == (1, 1):
        return layers[-1].out_channels
    raise EvaluationError(f"cannot tell how many classes {type(model).__name__} outputs: it has no nn.Linear layer "
                          "and does not end in a 1×1 nn.Conv2d; give it one of these as its classifier")


def open_checked_source(kind: str, data: Path, model: nn.Module, model_name: str, clean_data: Path | None,
                        class_index: Path | None, labels: Path | None = None) -> EvalSource:
    """Open the data and check that its classes fit the model, with one clear message otherwise."""
    try:
        index = read_class_index(class_index) if class_index else None
        source = open_source(kind, data, model.architecture.input_size, clean_data, index, labels)
    except DatasetError as error:
        raise EvaluationError(str(error)) from None
    classes = model_classes(model)
    if source.labels is not None:  # the labels index the model's outputs: each must be one
        if source.num_classes > classes:
            raise EvaluationError(f"--labels {source.labels} has class {source.num_classes - 1} but {model_name} "
                                  f"outputs {counted(classes, 'class')}; pass the labels of this model's classes")
        return source
    if source.num_classes != classes:
        deeper = _class_folders_below(Path(data), classes)
        if deeper:
            raise EvaluationError(f"{data} has {counted(source.num_classes, 'class folder')} but {model_name} outputs "
                                  f"{counted(classes, 'class')}; did you mean --data {deeper}? (it holds "
                                  f"{counted(classes, 'class folder')})")
        raise EvaluationError(
            f"{data} has {counted(source.num_classes, 'class')} but {model_name} outputs "
            f"{counted(classes, 'class')}; pass "
            "--num-classes, or --class-index to map a subset of ImageNet class folders to model outputs"
        )
    return source


def _class_folders_below(data: Path, classes: int) -> Path | None:
    """A subfolder of ``data`` with ``classes`` class folders: the level the user probably meant."""
    if not data.is_dir():
        return None
    for folder in sorted(p for p in data.iterdir() if p.is_dir()):
        if sum(1 for p in folder.iterdir() if p.is_dir()) == classes:
            return folder
    return None


def selected_indices(source: EvalSource, limit: int | None, seed: int) -> list[int]:
    """The images every cell evaluates, checked for sizes the model can take."""
    indices = source.subset(limit, seed)
    try:
        source.check_sizes(indices)
    except DatasetError as error:
        raise EvaluationError(str(error)) from None
    return indices


def data_identity(source: EvalSource, data: Path, clean_data: Path | None) -> dict:
    """The data's part of a run identity: where, how many, which class mapping, at which size,
    and a fingerprint that changes when the files change in place (and, for a flat folder, its
    labels file: only then, so the identities of other runs stay as they were)."""
    labels = {"labels_sha256": labels_digest(source.labels)} if source.labels is not None else {}
    return {**labels,
        "dataset": str(Path(data).resolve()),
        "dataset_size": len(source.base_targets),
        "clean_data": str(Path(clean_data).resolve()) if clean_data else None,
        "class_index_sha256": class_index_digest(source.class_index),
        "input_size": source.input_size,
        "fingerprint": source.fingerprint,
    }


@functools.lru_cache(maxsize=1)
def _processor() -> str:
    """The CPU's name, read once per process (``platform.processor`` runs ``uname -p`` each call)."""
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> Environment:
    """This process's package and torch versions, device and host: a run's provenance."""
    if device.type == "cuda":
        name = f"cuda: {torch.cuda.get_device_name(device)}"
    else:
        name = f"{device.type}: {_processor()}"
    return Environment(package=__version__, torch=torch.__version__, device=name, host=socket.gethostname())


def open_store(path: Path, ctx: DistContext) -> ResultStore | None:
    """The results store on rank 0 (the only writer), opened once every check has passed; each
    cell it writes records this process's environment."""
    if not ctx.is_main:
        return None
    store = ResultStore(path)
    store.environment = environment(ctx.device)
    return store


def start_run(store: ResultStore, kind: str, model: str, identity: dict, name: str | None) -> Run:
    """The stored run of this identity (created if new), saying so when the only difference from
    a stored run is the data's fingerprint: the files changed in place, so its cells are not reused."""
    run = store.run(kind, model, identity, name)
    stale = [r for r in store.runs(kind, [model]) if r.id != run.id and r.config.get("fingerprint")
             != identity["fingerprint"] and {**r.config, "fingerprint": identity["fingerprint"]} == identity]
    if stale and not store.cells(run):
        warnings.warn(f"the files in {identity['dataset']} changed since run {stale[-1].id} (sizes or modification "
                      f"times); starting run {run.id} instead of reusing its cells", stacklevel=3)
    return run


class Tally:
    """Top-1/top-5 outcomes of a cell's batches, kept on the device until ``outcomes`` (one
    transfer per cell instead of a synchronisation per batch)."""

    def __init__(self) -> None:
        self._top1: list[Tensor] = []
        self._top5: list[Tensor] = []
        self._index: list[Tensor] = []

    def add(self, logits: Tensor, labels: Tensor, index: Tensor) -> None:
        top1, top5 = top_hits(logits, labels)
        self._top1.append(top1)
        self._top5.append(top5)
        self._index.append(index)

    def outcomes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(dataset indices, top-1 hits, top-5 hits) of every image added, on the host."""
        if not self._index:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)
        hits = torch.stack([torch.cat(self._top1), torch.cat(self._top5)]).cpu().numpy()
        return torch.cat(self._index).numpy(), hits[0], hits[1]

    def counts(self, skipped: int, positions: dict[int, int], ctx: DistContext) -> tuple[list[int], np.ndarray]:
        """([n, top-1 errors, top-5 errors, skipped] over all ranks, per-position top-1 hits over
        ``len(positions)`` positions; images not evaluated stay False)."""
        index, top1, top5 = self.outcomes()
        totals = sum_counts([len(index), int((~top1).sum()), int((~top5).sum()), skipped], ctx)
        flags = gather_flags({positions[int(i)]: hit for i, hit in zip(index, top1)}, len(positions), 1, ctx)[0]
        return totals, flags


def count_cell(name: str, level: str, batches: ImageBatches, logits_of: Callable[[Tensor, Tensor], Tensor],
               positions: dict[int, int], ctx: DistContext, bar: Progress) -> Cell:
    """Top-1/top-5 errors of ``logits_of(float images, dataset indices)`` over all ranks' batches,
    and the per-image top-1 outcomes (bit ``positions[index]`` set when the image is classified
    correctly; unread images stay 0) for paired statistics."""
    tally = Tally()
    for images, labels, index in batches:
        tally.add(logits_of(to_float_images(images, ctx.device), index), labels, index)
        bar.update(len(labels) * ctx.world)
    (n, top1, top5, skipped), flags = tally.counts(batches.skipped, positions, ctx)
    return Cell(name, level, n, top1, top5, skipped, mask=pack_flags(flags))
