"""Where evaluation images come from: a clean ImageFolder corrupted on the fly, the released
ImageNet-C tree, or the released CIFAR-10-C arrays. Every dataset yields
(uint8 image (3, H, W), label, index, readable) so unreadable files are counted, not fatal.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from ..choices import CORRUPTION_SOURCES
from ..corruptions import names as corruption_names
from ..corruptions.api import is_severity
from .arrays import check_pixels, check_scaled, load_array, read_labels
from .decode import Geometry, pil_decode
from .folders import RESIZE_FROM, DatasetError, _balanced_indices, eval_geometry, eval_transform
from .labels import flat_samples

SOURCES = CORRUPTION_SOURCES


def read_class_index(path: str | Path) -> dict[str, int]:
    """Folder name → class index, from an ImageNet ``imagenet_class_index.json`` or a
    ``synset_words.txt`` (line i starts with the folder name of class i)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"--class-index {path} does not exist")
    try:
        if path.suffix == ".json":
            return {entry[0]: int(index) for index, entry in json.loads(path.read_text()).items()}
        return {line.split()[0]: i for i, line in enumerate(path.read_text().splitlines()) if line.strip()}
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, UnicodeDecodeError):
        raise DatasetError(f"--class-index {path} is neither an imagenet_class_index.json "
                           "({\"0\": [\"n01440764\", \"tench\"], ...}) nor a synset_words.txt") from None


def class_index_digest(class_index: dict[str, int] | None) -> str | None:
    """A short digest of a folder → class mapping, for run identities."""
    if class_index is None:
        return None
    return hashlib.sha256(json.dumps(class_index, sort_keys=True).encode()).hexdigest()[:16]


def files_fingerprint(paths: Iterable[str | Path]) -> str:
    """A cheap digest of files' names, sizes and modification times: changes when data changes in place."""
    digest = hashlib.sha256()
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


class ImageFiles(Dataset):
    """Labelled image files, decoded to uint8 with a transform; a failed decode is reported, not raised."""

    def __init__(self, samples: Sequence[tuple[str, int]], transform, fallback_size: int) -> None:
        self.samples = list(samples)
        self.targets = [label for _, label in self.samples]
        self.transform = transform
        self.fallback_size = fallback_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        image = pil_decode(path, self.transform)
        if image is None:
            return torch.zeros(3, self.fallback_size, self.fallback_size, dtype=torch.uint8), label, index, False
        return image, label, index, True


class ArrayImages(Dataset):
    """Rows of a (N, H, W, 3) uint8 array (memory-mapped), as in the released CIFAR-10-C files."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, offset: int = 0) -> None:
        self.images, self.labels, self.offset = images, labels, offset

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        row = np.array(self.images[self.offset + index])
        return torch.from_numpy(row).permute(2, 0, 1), int(self.labels[index]), index, True


def check_image_sizes(dataset: ImageFiles, indices: Sequence[int], input_size: int) -> None:
    """Sizes below RESIZE_FROM are not resized: every image must have that size already (file
    headers only, so 10,000 CIFAR images take about a second)."""
    if input_size >= RESIZE_FROM:
        return
    expected = (input_size, input_size)
    for index in indices:
        path = dataset.samples[index][0]
        try:
            with Image.open(path) as image:
                size = image.size
        except (OSError, UnidentifiedImageError, ValueError):
            continue  # unreadable: counted (or refused) where it is decoded
        if size != expected:
            raise DatasetError(
                f"{path} is {size[0]}×{size[1]} px but {input_size}-px images are not resized; resize the dataset "
                f"to {input_size}×{input_size}, or use a size of {RESIZE_FROM} px or more (resize + center crop)"
            )


def folder_samples(root: Path, class_index: dict[str, int] | None,
                   extensions: tuple[str, ...] = IMG_EXTENSIONS) -> tuple[list[tuple[str, int]], int]:
    """(path, label) pairs of an ImageFolder (files with ``extensions``) and its class count,
    with a clear error when empty."""
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist; pass an ImageFolder root (<class>/<image>)")
    try:
        classes, mapping = find_classes(str(root))
    except FileNotFoundError:
        flat = any(p.suffix.lower() in extensions for p in root.iterdir() if p.is_file())
        hint = ("; for a flat folder of images (the official ImageNet validation layout) pass its labels with "
                "--labels FILE (caffe val.txt or LOC_val_solution.csv)") if flat else ""
        raise DatasetError(f"dataset folder {root} has no class subfolders (<class>/<image>){hint}") from None
    if class_index is not None:
        unknown = [c for c in classes if c not in class_index]
        if unknown:
            raise DatasetError(f"{root}: folders {unknown[:3]} are not in the class index")
        mapping = {c: class_index[c] for c in classes}
    samples = make_dataset(str(root), mapping, extensions=extensions, allow_empty=True)
    if not samples:
        kind = "images" if extensions == IMG_EXTENSIONS else f"{'/'.join(extensions)} files"
        raise DatasetError(f"dataset folder {root} holds no {kind} in its class subfolders")
    count = max(class_index.values()) + 1 if class_index is not None else len(classes)
    return samples, count


@dataclass
class EvalSource:
    """The clean set and the corrupted cells of one evaluation."""

    kind: str
    root: Path
    input_size: int
    clean: Dataset | None
    num_classes: int
    base_targets: list[int]
    class_index: dict[str, int] | None = None
    fingerprint: str = ""
    labels: Path | None = None  # the labels file of a flat folder: its labels index the model's outputs

    @property
    def on_the_fly(self) -> bool:
        return self.kind == "generated"

    def geometry(self, corrupted: bool) -> Geometry:
        """How files are brought to the input size: the eval transform for clean images, a center
        crop for the released corrupted files (already resized when they were made)."""
        return Geometry(None, self.input_size) if corrupted else eval_geometry(self.input_size)

    def check_sizes(self, indices: Sequence[int]) -> None:
        """Without a resize step (32-px models), every selected clean image must already have the
        model's input size: refuse before any cell runs instead of failing half-way."""
        if isinstance(self.clean, ImageFiles):
            check_image_sizes(self.clean, indices, self.input_size)

    def check_cell(self, corruption: str, severity: int) -> None:
        """That a released cell exists and fits the other cells, so a run is refused before its
        first cell rather than mid-way (opening a cell lists its files or maps its array)."""
        self.cell(corruption, severity)

    def _cell_samples(self, corruption: str, severity: int) -> list[tuple[str, int]]:
        """An ImageNet-C cell's files, checked to be the images of the tree's other cells."""
        folder = self.root / corruption / str(severity)
        if not folder.is_dir():
            raise DatasetError(f"{folder} is missing from the ImageNet-C tree")
        samples, _ = folder_samples(folder, self.class_index)
        if len(samples) != len(self.base_targets):
            raise DatasetError(f"{folder} holds {len(samples)} images where the other cells of {self.root} hold "
                               f"{len(self.base_targets)}; restore the missing files from the release")
        if [label for _, label in samples] != self.base_targets:
            raise DatasetError(f"{folder} holds other classes than the other cells of {self.root}")
        return samples

    def _cell_array(self, corruption: str) -> np.ndarray:
        """A CIFAR-10-C corruption's images, checked: uint8 (5 severities × N, size, size, 3), the
        N of labels.npy, at the model's input size (the arrays are not resized)."""
        path = self.root / f"{corruption}.npy"
        if not path.is_file():
            raise DatasetError(f"CIFAR-10-C file {path} is missing")
        images = load_array(path)
        check_pixels(images, path)
        size, count = self.input_size, len(self.base_targets)
        if images.ndim != 4 or images.shape[1:] != (size, size, 3):
            raise DatasetError(f"{path} has shape {images.shape}, expected (images, {size}, {size}, 3): RGB images "
                               f"at the model's {size}-px input size")
        if images.shape[0] != 5 * count:
            raise DatasetError(f"{path} holds {images.shape[0]} images where labels.npy describes 5 severities × "
                               f"{count} = {5 * count}; the arrays and labels.npy must come from the same release")
        check_scaled(images, path)
        return images

    def subset(self, limit: int | None, seed: int) -> list[int]:
        """The fixed, class-balanced, seeded indices every cell evaluates."""
        if limit is None or limit >= len(self.base_targets):
            return list(range(len(self.base_targets)))
        return _balanced_indices(self.base_targets, limit, seed)

    def cell(self, corruption: str, severity: int) -> Dataset:
        """The released corrupted images of one cell (on-the-fly sources corrupt the clean set)."""
        if not is_severity(severity):
            raise DatasetError(f"severity must be an integer from 1 to 5, got {severity!r}")
        if self.on_the_fly:
            return self.clean
        if self.kind == "imagenet-c":
            return ImageFiles(self._cell_samples(corruption, severity), self.geometry(corrupted=True).pil_transform(),
                              self.input_size)
        return ArrayImages(self._cell_array(corruption), np.asarray(self.base_targets),
                           offset=(severity - 1) * len(self.base_targets))


def open_source(kind: str, root: str | Path, input_size: int, clean_root: str | Path | None = None,
                class_index: dict[str, int] | None = None, labels: Path | None = None) -> EvalSource:
    """Open an evaluation source, checking its layout; ``labels``: a flat folder's labels file."""
    root = Path(root)
    if kind not in SOURCES:
        raise DatasetError(f"unknown source {kind!r}; choose one of {', '.join(SOURCES)}")
    if labels is not None:
        if kind != "generated":
            raise DatasetError(f"--labels reads a flat folder of clean images; --source {kind} has its own layout")
        samples = flat_samples(root, Path(labels), class_index)
        clean = ImageFiles(samples, eval_transform(input_size), input_size)
        return EvalSource(kind, root, input_size, clean, max(label for _, label in samples) + 1, clean.targets,
                          class_index, files_fingerprint(path for path, _ in samples), Path(labels))

    def clean_folder(folder: Path) -> tuple[ImageFiles, int]:
        samples, count = folder_samples(folder, class_index)
        return ImageFiles(samples, eval_transform(input_size), input_size), count

    if kind == "generated":
        clean, count = clean_folder(root)
        fingerprint = files_fingerprint(path for path, _ in clean.samples)
        return EvalSource(kind, root, input_size, clean, count, clean.targets, class_index, fingerprint)
    clean = clean_folder(Path(clean_root))[0] if clean_root else None
    clean_files = [path for path, _ in clean.samples] if clean else []
    if kind == "imagenet-c":
        cells = [root / name / str(s) for name in corruption_names("all") for s in range(1, 6)]
        present = [folder for folder in cells if folder.is_dir()]
        if not present:
            raise DatasetError(f"{root} is not a released ImageNet-C tree: no <corruption>/<severity> folder "
                               "(layout <corruption>/<severity>/<wnid>/<image>)")
        samples, count = folder_samples(present[0], class_index)
        if clean is not None and clean.targets != [label for _, label in samples]:
            raise DatasetError(f"--clean-data {clean_root} does not hold the same images as {present[0]} (other "
                               "classes or counts); pass the clean set the ImageNet-C tree was made from")
        # the first cell's files and every cell folder (3.75 M files are too many to stat each run)
        fingerprint = files_fingerprint([*clean_files, *(path for path, _ in samples), *present])
        return EvalSource(kind, root, input_size, clean, count, [label for _, label in samples], class_index,
                          fingerprint)
    labels_path = root / "labels.npy"
    if not labels_path.is_file():
        raise DatasetError(f"{root} is not a CIFAR-10-C folder: {labels_path} is missing")
    labels = read_labels(labels_path)
    per_severity = len(labels) // 5
    if len(labels) % 5 or (labels.reshape(5, per_severity) != labels[:per_severity]).any():
        raise DatasetError(f"{labels_path} holds {len(labels)} labels that are not the same N labels once per "
                           "severity (5 × N), as the released CIFAR-10-C labels.npy")
    if clean is not None and len(clean) != per_severity:
        raise DatasetError(f"--clean-data {clean_root} holds {len(clean)} images but the CIFAR-10-C arrays in {root} "
                           f"hold {per_severity} per severity; pass the clean set they were made from")
    fingerprint = files_fingerprint([*clean_files, *sorted(root.glob("*.npy"))])
    return EvalSource(kind, root, input_size, clean, int(labels.max()) + 1, labels[:per_severity].tolist(),
                      fingerprint=fingerprint)
