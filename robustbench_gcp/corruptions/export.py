"""Write a corrupted copy of an ImageFolder in the released ImageNet-C layout.

``<out>/<corruption>/<severity>/<class>/<file>``: JPEG q85 for the imagenet-c protocol (what
the released files are), PNG otherwise. Each file is written atomically and existing files are
skipped, so an interrupted export resumes where it stopped; per-image seeds make the resumed
output identical to an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from ..data.folders import image_folder
from ..fileio import atomic_write_bytes
from .api import IMAGENET_C_JPEG_QUALITY, check_name, check_options, corrupt_to_uint8, names
from .ops import quiet_torchvision_codecs
from .seeding import image_generators

DEFAULT_SIZE = {"imagenet-c": 224, "imagecorruptions": 224, "cifar10-c": 32}


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


class _Indexed(Dataset):
    """Yields (image, dataset index) so per-image seeds follow the image, not the batch."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset[index][0], index


def _encode(batch: torch.Tensor, protocol: str) -> list[bytes]:
    from torchvision.io import encode_jpeg, encode_png

    with quiet_torchvision_codecs():
        if protocol == "imagenet-c":
            encoded = encode_jpeg(list(batch.unbind(0)), quality=IMAGENET_C_JPEG_QUALITY)
        else:
            encoded = [encode_png(image) for image in batch.cpu().unbind(0)]
    return [bytes(e.cpu().numpy().tobytes()) for e in encoded]


def target_path(config: ExportConfig, corruption: str, severity: int, class_name: str, source: Path) -> Path:
    suffix = ".JPEG" if config.protocol == "imagenet-c" else ".png"
    name = source.name if source.suffix == suffix else source.stem + suffix
    return config.out / corruption / str(severity) / class_name / name


def export_corrupted_folder(config: ExportConfig, progress: bool = True) -> ExportSummary:
    """Corrupt every image of ``config.data`` for each (corruption, severity) and write it."""
    for name in config.corruptions:
        check_name(name)
    for severity in config.severities:
        check_options(config.corruptions[0], severity, config.protocol, config.backend)
    dataset = image_folder(config.data, config.size or DEFAULT_SIZE[config.protocol])
    indexed = _Indexed(dataset)
    summary = ExportSummary()
    cells = [(c, s) for c in config.corruptions for s in config.severities]
    bar = tqdm(total=len(cells) * len(dataset), unit="img", disable=not progress, desc="corrupt")
    for corruption, severity in cells:
        targets = [
            target_path(config, corruption, severity, dataset.classes[label], Path(path))
            for path, label in dataset.samples
        ]
        pending = [i for i, target in enumerate(targets) if not target.exists()]
        summary.skipped += len(targets) - len(pending)
        bar.update(len(targets) - len(pending))
        bar.set_postfix_str(f"{corruption} {severity}")
        loader = DataLoader(Subset(indexed, pending), batch_size=config.batch_size, num_workers=config.workers,
                            pin_memory=config.device != "cpu")
        try:
            for images, indices in loader:
                batch = images.to(config.device, non_blocking=True).float().div_(255)
                generators = image_generators(config.seed, indices.tolist(), corruption, severity, config.device)
                corrupted = corrupt_to_uint8(batch, corruption, severity, protocol=config.protocol,
                                             backend=config.backend, generator=generators)
                for index, data in zip(indices.tolist(), _encode(corrupted, config.protocol)):
                    atomic_write_bytes(targets[index], data)
                summary.written += len(indices)
                bar.update(len(indices))
        except RuntimeError as error:
            if "stack expects each tensor to be equal size" in str(error):
                raise ValueError(
                    f"images in {config.data} differ in size; pass --size to resize and center-crop them"
                ) from None
            raise
    bar.close()
    return summary
