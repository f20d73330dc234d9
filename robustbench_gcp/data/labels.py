"""Flat image folders with a labels file: the official ImageNet validation layout.

The validation set is distributed as 50,000 JPEGs in one folder, with the labels apart. Two
common label files are read: a ``file label`` list (the caffe ``val.txt``, labels as class
indices or as WordNet ids; ``path/file, label`` too) and the devkit's ``LOC_val_solution.csv``
(``ImageId,PredictionString``, the first word of the prediction the WordNet id). WordNet ids
become class indices through ``--class-index``, or, for all 1,000 classes, in sorted order (the
standard ImageNet index).
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from torchvision.datasets.folder import IMG_EXTENSIONS

from .folders import DatasetError

IMAGENET_CLASSES = 1000


def read_labels_file(path: Path, class_index: dict[str, int] | None) -> dict[str, int]:
    """File name (and name without extension) → class index, from either format."""
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"--labels {path}: cannot read it as text ({getattr(error, 'strerror', None) or error})") \
            from None
    if lines and lines[0].replace(" ", "").lower().startswith("imageid,predictionstring"):
        rows = [(row[0], row[1].split()[0]) for row in csv.reader(lines[1:]) if len(row) >= 2 and row[1].split()]
        expected = len(lines) - 1
    else:
        rows = [(Path(words[0].rstrip(",")).name, words[1]) for words in (line.split() for line in lines)
                if len(words) == 2]
        expected = len(lines)
    if not rows or len(rows) != expected:
        raise DatasetError(f"--labels {path}: expected 'FILE LABEL' lines (caffe val.txt) or the devkit's "
                           "LOC_val_solution.csv (ImageId,PredictionString), one row per image")
    wnids = _wnid_index(rows, class_index, path)
    return {name: _class_of(label, wnids, path) for file, label in rows for name in {file, Path(file).stem}}


def _wnid_index(rows: list[tuple[str, str]], class_index: dict[str, int] | None, path: Path) -> dict[str, int]:
    """WordNet id → class index: the --class-index, else sorted order over all 1,000 classes."""
    if class_index is not None:
        return class_index
    wnids = sorted({label for _, label in rows if not label.isdigit()})
    if wnids and len(wnids) != IMAGENET_CLASSES:
        raise DatasetError(f"--labels {path} names classes by WordNet id ({len(wnids)} of them): pass --class-index "
                           "(imagenet_class_index.json) to say which output each one is")
    return {wnid: i for i, wnid in enumerate(wnids)}


def _class_of(label: str, wnids: dict[str, int], path: Path) -> int:
    if label.isdigit():
        return int(label)
    if label not in wnids:
        raise DatasetError(f"--labels {path}: {label!r} is not in the --class-index")
    return wnids[label]


def labels_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def flat_samples(root: Path, labels_path: Path, class_index: dict[str, int] | None) -> list[tuple[str, int]]:
    """(path, label) of every image directly in ``root``; every one must have a label."""
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    if not labels_path.is_file():
        raise DatasetError(f"--labels {labels_path} does not exist")
    labels = read_labels_file(labels_path, class_index)
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
    if not files:
        raise DatasetError(f"dataset folder {root} holds no images directly in it (a flat folder with --labels)")
    missing = [p.name for p in files if p.name not in labels and p.stem not in labels]
    if missing:
        raise DatasetError(f"--labels {labels_path} has no label for {len(missing)} of the {len(files)} images in "
                           f"{root}, e.g. {missing[0]}; pass the labels file of these images")
    return [(str(p), labels.get(p.name, labels.get(p.stem))) for p in files]
