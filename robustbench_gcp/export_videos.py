"""Write the perturbation sequences of an ImageFolder in the released layouts.

ImageNet-P: ``<out>/<perturbation>[_<difficulty>]/<class>/<stem>.mp4``, H.264 as the released
files were encoded. CIFAR-10-P: ``<out>/<perturbation>[_<difficulty>].npy`` (videos, frames,
32, 32, 3) uint8 and ``<out>/labels.npy``. Every file is written atomically and existing ones are
skipped, so an interrupted export resumes; per-image seeds make the frames the ones
``eval-perturbation`` generates on the fly for the same images.
"""

from __future__ import annotations

import io
import math
import os
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data.batches import ImageBatches, UnreadableImages, batches_of
from .data.folders import DatasetError
from .data.sources import check_image_sizes
from .data.videos import open_video_source, sequence_file, write_video
from .devices import to_float_images
from .distributed import DistContext
from .errors import Error
from .export import ExportSummary
from .fileio import AtomicFile, atomic_write_bytes
from .perturbations import PROTOCOLS, names, perturb_to_uint8, sequence_length, sequence_level, sequence_streams, spec
from .perturbations.api import check_name
from .progress import progress_bar
from .stability import DEFAULT_DIFFICULTIES, DIFFICULTIES, NOISE_PERTURBATIONS


class VideoExportError(Error, ValueError):
    """An export that cannot run as configured, with the fix in the message."""


@dataclass
class VideoExportConfig:
    """What to perturb, how, and where to write it."""

    data: Path
    out: Path
    protocol: str = "imagenet-p"
    perturbations: str | Sequence[str] = "test"  # names, or a subset of the protocol: test, validation, all
    difficulties: Sequence[int] = DEFAULT_DIFFICULTIES  # 2, 3 add the stronger noise sequences (_2, _3)
    device: str = "cpu"
    batch_size: int = 128  # frames per generated batch
    workers: int = 0
    seed: int = 0
    chunk_size: int = 256  # clean images decoded at once


def _check(config: VideoExportConfig) -> list[tuple[str, int]]:
    """Every option checked before anything is read; returns the sequences to write."""
    if config.protocol not in PROTOCOLS:
        raise VideoExportError(f"--protocol {config.protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    if not config.perturbations:
        raise VideoExportError("--perturbations selects no perturbation; pass names or test|validation|all")
    chosen = names(config.perturbations, config.protocol) if isinstance(config.perturbations, str) \
        else config.perturbations
    for name in chosen:
        check_name(name)
    if not config.difficulties or any(d not in DIFFICULTIES for d in config.difficulties):
        raise VideoExportError(f"--difficulties {list(config.difficulties)}: pass some of 1,2,3")
    if config.batch_size < 1 or config.workers < 0 or config.chunk_size < 1:
        raise VideoExportError("--batch-size and --chunk-size must be positive and --workers 0 or more")
    return list(dict.fromkeys((n, sequence_level(n, d)) for n in chosen for d in config.difficulties))


def _video_target(out: Path, name: str, level: int, sample: str, root: Path) -> Path:
    relative = Path(sample).relative_to(root)
    return out / sequence_file(name, level) / relative.with_suffix(".mp4")


def export_perturbation_videos(config: VideoExportConfig, progress: bool = True) -> ExportSummary:
    """Generate every requested sequence of every image of ``config.data`` and write it."""
    sequences = _check(config)
    root = Path(config.data)
    try:
        source = open_video_source("generated", root, config.protocol, 0)
        if spec(config.protocol).resize is None:  # 32-px photos are taken as they are
            check_image_sizes(source.clean, range(len(source.clean)), spec(config.protocol).size)
    except DatasetError as error:
        raise VideoExportError(str(error)) from None
    samples = [path for path, _ in source.clean.samples]
    arrays = config.protocol == "cifar10-p"
    if arrays:
        targets = {seq: [config.out / f"{sequence_file(*seq)}.npy"] * len(samples) for seq in sequences}
    else:
        targets = {seq: [_video_target(config.out, *seq, path, root) for path in samples] for seq in sequences}
    missing = {seq: np.array([not t.exists() for t in paths], dtype=bool) for seq, paths in targets.items()}
    summary = ExportSummary(skipped=int(sum((~m).sum() for m in missing.values())) // (len(samples) if arrays else 1))
    device = torch.device(config.device)
    work = np.flatnonzero(np.logical_or.reduce(list(missing.values())))
    bar = progress_bar(int(sum(m.sum() for m in missing.values())), "perturb", progress)
    pending = [seq for seq in sequences if missing[seq].any()]
    size = source.clean.fallback_size
    # left with an error, the stack removes every staged array; without, it renames them into place
    with ExitStack() as staging, ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as writers:
        staged = {(name, level): staging.enter_context(_StagedArray(
            targets[name, level][0], (len(samples), sequence_length(name, config.protocol), size, size, 3)))
            for name, level in pending} if arrays else {}
        writes: deque = deque()
        for start in range(0, len(work), config.chunk_size):
            chunk = work[start : start + config.chunk_size]
            images, indices = _read(source.clean, chunk, config, device)
            for name, level in pending:
                wanted = torch.from_numpy(missing[name, level][indices.numpy()])
                per_batch = max(1, config.batch_size // sequence_length(name, config.protocol))
                bar.set_postfix_str(sequence_file(name, level))
                for batch, index in batches_of((images, indices), wanted, per_batch):
                    videos = perturb_to_uint8(to_float_images(batch, device), name, protocol=config.protocol,
                                              difficulty=level,
                                              generator=sequence_streams(config.seed, index, name, level, device))
                    frames = videos.permute(0, 1, 3, 4, 2).cpu().numpy()  # (B, T, H, W, 3)
                    if arrays:
                        staged[name, level].write_rows(index.tolist(), frames)
                    else:
                        noise = name in NOISE_PERTURBATIONS
                        writes.extend(writers.submit(write_video, targets[name, level][i], video, noise)
                                      for i, video in zip(index.tolist(), frames))
                        while len(writes) > 2 * (os.cpu_count() or 1):
                            writes.popleft().result()
                    summary.written += len(index)
                    bar.update(len(index))
        while writes:
            writes.popleft().result()
    if arrays:
        atomic_write_bytes(config.out / "labels.npy", _npy_bytes(np.asarray(source.base_targets, dtype=np.int64)))
    bar.close()
    return summary


def _read(dataset, chunk: np.ndarray, config: VideoExportConfig, device: torch.device):
    batches = ImageBatches(dataset, chunk.tolist(), config.batch_size, config.workers, DistContext(device=device),
                           strict=True)
    try:
        images, _, indices = batches.gather()
    except UnreadableImages as error:
        raise VideoExportError(f"{error.paths[0]} cannot be decoded as an image; remove or replace it and rerun "
                               "(files already written are kept)") from None
    return images, indices


class _StagedArray(AtomicFile):
    """A CIFAR-10-P array (``.npy``, uint8) filled row by row beside its target and renamed into
    place when complete.

    Its disk space is reserved first, so a full disk stops the export before any frame is
    generated; rows go through plain writes, not a memory map, whose page faults on a full disk
    kill the process (SIGBUS) instead of raising an error.
    """

    def __init__(self, target: Path, shape: tuple[int, ...]) -> None:
        super().__init__(target)
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": shape})
        self.offset, self.row_bytes = header.tell(), math.prod(shape[1:])
        self.reserve(self.offset + shape[0] * self.row_bytes)
        self.write(header.getvalue())

    def write_rows(self, rows: Sequence[int], frames: np.ndarray) -> None:
        for row, video in zip(rows, frames):
            self.seek(self.offset + row * self.row_bytes)
            self.write(video.tobytes())


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()
