"""Write a corrupted copy of an ImageFolder in the released ImageNet-C layout.

``<out>/<corruption>/<severity>/<class>/<file>``: JPEG q85 for the imagenet-c protocol (what
the released files are), PNG otherwise; nested folders inside a class keep their relative path.
Each file is written atomically and existing files are skipped, so an interrupted export resumes
where it stopped; per-image seeds make the resumed output identical to an uninterrupted one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from .corruptions.api import IMAGENET_C_JPEG_QUALITY, check_name, check_options, corrupt_to_uint8, names
from .corruptions.ops import quiet_torchvision_codecs
from .corruptions.params import MIN_SIZE
from .data.folders import DatasetError, eval_transform
from .data.sources import ImageFiles, check_image_sizes, folder_samples
from .errors import Error
from .fileio import atomic_write_bytes
from .progress import progress_bar
from .rng import image_generators

DEFAULT_SIZE = {"imagenet-c": 224, "imagecorruptions": 224, "cifar10-c": 32}


class ExportError(Error, ValueError):
    """An export that cannot run as configured, with the fix in the message."""


@dataclass
class ExportConfig:
    """What to corrupt, how, and where to write it."""

    data: Path
    out: Path
    protocol: str = "imagenet-c"
    corruptions: Sequence[str] = field(default_factory=lambda: names("common"))
    severities: Sequence[int] = (1, 2, 3, 4, 5)
    backend: str = "native"
    device: str = "cpu"
    batch_size: int = 64
    workers: int = 0
    seed: int = 0
    size: int | None = None  # default: DEFAULT_SIZE[protocol]


@dataclass
class ExportSummary:
    written: int = 0
    skipped: int = 0


def _encode(batch: torch.Tensor, protocol: str) -> list[bytes]:
    from torchvision.io import encode_jpeg, encode_png

    with quiet_torchvision_codecs():
        if protocol == "imagenet-c":
            encoded = encode_jpeg(list(batch.unbind(0)), quality=IMAGENET_C_JPEG_QUALITY)
        else:
            encoded = [encode_png(image) for image in batch.cpu().unbind(0)]
    return [bytes(e.cpu().numpy().tobytes()) for e in encoded]


def relative_targets(root: Path, sources: Sequence[str], protocol: str) -> list[Path]:
    """Each source image's path under a (corruption, severity) folder: its path below ``root`` with
    the output format's suffix. Two sources that would land on one file (``0001.jpg`` and
    ``0001.png``) both keep their whole name before the suffix (``0001.jpg.png``, ``0001.png``)."""
    suffix = ".JPEG" if protocol == "imagenet-c" else ".png"
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
    if config.batch_size < 1 or config.workers < 0:
        raise ExportError("--batch-size must be positive and --workers 0 or more")
    return size


def export_corrupted_folder(config: ExportConfig, progress: bool = True) -> ExportSummary:
    """Corrupt every image of ``config.data`` for each (corruption, severity) and write it."""
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
    bar = progress_bar(len(cells) * len(dataset), "corrupt", progress)
    for corruption, severity in cells:
        targets = [config.out / corruption / str(severity) / path for path in relative]
        pending = [i for i, target in enumerate(targets) if not target.exists()]
        summary.skipped += len(targets) - len(pending)
        bar.update(len(targets) - len(pending))
        bar.set_postfix_str(f"{corruption} {severity}")
        loader = DataLoader(Subset(dataset, pending), batch_size=config.batch_size, num_workers=config.workers,
                            pin_memory=config.device != "cpu")
        for images, _, indices, readable in loader:
            if not readable.all():
                bad = samples[int(indices[~readable][0])][0]
                raise DatasetError(f"{bad} cannot be decoded as an image; remove or replace it and rerun "
                                   "(images already written are kept)")
            batch = images.to(config.device, non_blocking=True).float().div_(255)
            generators = image_generators(config.seed, indices.tolist(), corruption, severity, config.device)
            corrupted = corrupt_to_uint8(batch, corruption, severity, protocol=config.protocol,
                                         backend=config.backend, generator=generators)
            for index, data in zip(indices.tolist(), _encode(corrupted, config.protocol)):
                atomic_write_bytes(targets[index], data)
            summary.written += len(indices)
            bar.update(len(indices))
    bar.close()
    return summary
