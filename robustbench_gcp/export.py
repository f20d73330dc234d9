"""Write a corrupted copy of an ImageFolder in the released ImageNet-C layout.

``<out>/<corruption>/<severity>/<class>/<file>``: JPEG q85 for the imagenet-c and imagenet-c-bar
protocols (what the released files are), PNG otherwise (the C-bar protocols name the severity
folder by the generator's severity value, as the released ImageNet-C-Bar does); nested folders
inside a class keep their relative path.
Each file is written atomically and existing files are skipped, so an interrupted export resumes
where it stopped; per-image seeds make the resumed output identical to an uninterrupted one.
"""

from __future__ import annotations

import os
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .choices import DECODERS
from .corruptions.api import (
    IMAGENET_C_JPEG_QUALITY,
    JPEG_PROTOCOLS,
    benchmark_names,
    check_name,
    check_options,
    corrupt_to_uint8,
    severity_folder,
)
from .corruptions.ops import quiet_torchvision_codecs
from .corruptions.params import MIN_SIZE
from .data.batches import DeviceDecoding, ImageBatches, UnreadableImages, batches_of
from .data.folders import DatasetError, eval_geometry, eval_transform
from .data.sources import ImageFiles, check_image_sizes, folder_samples
from .devices import to_float_images
from .distributed import DistContext
from .errors import Error
from .fileio import atomic_write_bytes
from .progress import progress_bar
from .rng import image_streams

DEFAULT_SIZE = {"imagenet-c": 224, "imagecorruptions": 224, "cifar10-c": 32, "imagenet-c-bar": 224, "cifar10-c-bar": 32}


class ExportError(Error, ValueError):
    """An export that cannot run as configured, with the fix in the message."""


@dataclass
class ExportConfig:
    """What to corrupt, how, and where to write it."""

    data: Path
    out: Path
    protocol: str = "imagenet-c"
    corruptions: Sequence[str] | None = None  # None: the protocol's benchmark set (common; a C-bar protocol's 10)
    severities: Sequence[int] = (1, 2, 3, 4, 5)
    backend: str = "native"
    device: str = "cpu"
    batch_size: int = 64
    workers: int = 0
    seed: int = 0
    size: int | None = None  # default: DEFAULT_SIZE[protocol]
    chunk_size: int = 4096  # images decoded at once and corrupted in every cell
    decode: str = "pil"  # or "device": JPEGs decoded in batches on the device (nvJPEG on CUDA)


@dataclass
class ExportSummary:
    written: int = 0
    skipped: int = 0


def _encode(image: torch.Tensor, protocol: str) -> bytes:
    """One uint8 (3, H, W) host image as the released files store it: libjpeg q85 (the released
    encoder's output, bit for bit; never nvJPEG) or PNG."""
    from torchvision.io import encode_jpeg, encode_png

    with quiet_torchvision_codecs():
        if protocol in JPEG_PROTOCOLS:
            return encode_jpeg(image, quality=IMAGENET_C_JPEG_QUALITY).numpy().tobytes()
        return encode_png(image).numpy().tobytes()


def relative_targets(root: Path, sources: Sequence[str], protocol: str) -> list[Path]:
    """Each source image's path under a (corruption, severity) folder: its path below ``root`` with
    the output format's suffix. Two sources that would land on one file (``0001.jpg`` and
    ``0001.png``) both keep their whole name before the suffix (``0001.jpg.png``, ``0001.png``)."""
    suffix = ".JPEG" if protocol in JPEG_PROTOCOLS else ".png"
    relative = [Path(path).relative_to(root) for path in sources]
    plain = [path if path.suffix == suffix else path.with_suffix(suffix) for path in relative]
    taken = Counter(plain)
    return [
        target if taken[target] == 1 or path == target else path.with_name(path.name + suffix)
        for path, target in zip(relative, plain)
    ]


def _check(config: ExportConfig) -> int:
    """Every option checked before anything is read or written; returns the image size."""
    if not config.corruptions:
        raise ExportError("--corruptions selects no corruption; pass names (gaussian_noise,fog) or a subset "
                          "(common, all, noise, ...)")
    if not config.severities:
        raise ExportError("--severities selects no severity; pass some of 1,2,3,4,5")
    for name in config.corruptions:
        for severity in config.severities:
            check_options(name, severity, config.protocol, config.backend)
    size = DEFAULT_SIZE[config.protocol] if config.size is None else config.size
    if size < MIN_SIZE[config.protocol]:
        raise ExportError(f"--size {size}: protocol {config.protocol!r} needs images of at least "
                          f"{MIN_SIZE[config.protocol]} px")
    if config.batch_size < 1 or config.workers < 0 or config.chunk_size < 1:
        raise ExportError("--batch-size and --chunk-size must be positive and --workers 0 or more")
    if config.decode not in DECODERS:
        raise ExportError(f"--decode {config.decode!r}: choose one of {', '.join(DECODERS)}")
    return size


def export_corrupted_folder(config: ExportConfig, progress: bool = True) -> ExportSummary:
    """Corrupt every image of ``config.data`` for each (corruption, severity) and write it.

    Images are read in chunks decoded once (on the device with ``decode="device"``); every
    (corruption, severity) still missing files corrupts the chunk on the device, and a pool of
    threads encodes and writes the files while the next batch is corrupted.
    """
    if config.corruptions is None:
        config = replace(config, corruptions=benchmark_names(config.protocol))
    for name in config.corruptions:
        check_name(name)
    size = _check(config)
    root = Path(config.data)
    samples, _ = folder_samples(root, None)
    dataset = ImageFiles(samples, eval_transform(size), size)
    check_image_sizes(dataset, range(len(dataset)), size)
    relative = relative_targets(root, [path for path, _ in samples], config.protocol)
    summary = ExportSummary()
    cells = [(c, s) for c in config.corruptions for s in config.severities]
    targets = {cell: [config.out / cell[0] / severity_folder(config.protocol, *cell) / path for path in relative]
               for cell in cells}
    missing = {cell: np.array([not target.exists() for target in targets[cell]], dtype=bool) for cell in cells}
    summary.skipped = int(sum((~m).sum() for m in missing.values()))
    bar = progress_bar(len(cells) * len(dataset), "corrupt", progress)
    bar.update(summary.skipped)
    device = torch.device(config.device)
    decoding = DeviceDecoding(eval_geometry(size), size) if config.decode == "device" else None
    work = np.flatnonzero(np.logical_or.reduce(list(missing.values())))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as writers:
        for start in range(0, len(work), config.chunk_size):
            chunk, writes = work[start : start + config.chunk_size], deque()
            batches = ImageBatches(dataset, chunk.tolist(), config.batch_size, config.workers,
                                   DistContext(device=device), strict=True, decoding=decoding)
            try:
                images, _, indices = batches.gather()  # strict: every image of the chunk is read
            except UnreadableImages as error:
                raise DatasetError(f"{error.paths[0]} cannot be decoded as an image; remove or replace it and rerun "
                                   "(images already written are kept)") from None
            for corruption, severity in cells:
                wanted = torch.from_numpy(missing[corruption, severity][indices.numpy()])
                bar.set_postfix_str(f"{corruption} {severity}")
                for batch, index in batches_of((images, indices), wanted, config.batch_size):
                    streams = image_streams(config.seed, index, corruption, severity, device)
                    corrupted = corrupt_to_uint8(to_float_images(batch, device), corruption, severity,
                                                 protocol=config.protocol, backend=config.backend, generator=streams,
                                                 check_input=False).cpu()
                    paths = [targets[corruption, severity][i] for i in index.tolist()]
                    writes.extend(writers.submit(_write, path, image, config.protocol)
                                  for path, image in zip(paths, corrupted.unbind(0)))
                    while len(writes) > 4 * config.batch_size:  # a bounded backlog of images in host memory
                        writes.popleft().result()
                    summary.written += len(index)
                    bar.update(len(index))
            while writes:  # the chunk's files are on disk (or their error raised) before the next chunk
                writes.popleft().result()
    bar.close()
    return summary


def _write(path: Path, image: torch.Tensor, protocol: str) -> None:
    atomic_write_bytes(path, _encode(image, protocol))

