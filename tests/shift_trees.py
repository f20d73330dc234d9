"""Small trees in the released layouts of ImageNet-A, -R, -Sketch and V2, built from the real
ImageNet validation photos of the shared test data (symlinks, nothing copied)."""

from __future__ import annotations

from pathlib import Path

from conftest import shared_path

from robustbench_gcp.data.shifts import wnids


def val_photos() -> list[tuple[Path, int]]:
    """The 1,300 labelled validation photos: (path, ImageNet output index)."""
    root = shared_path("imagenet_val_acuity")
    rows = [line.split(", ") for line in (root / "dataset.txt").read_text().splitlines() if line.strip()]
    return [(root / path, int(label)) for path, label in rows]


def photos_of(source: str, count: int, skip: int = 0) -> list[tuple[Path, int]]:
    """``count`` photos (after the first ``skip``) of the classes a shift has (all for Sketch and V2)."""
    if source in ("imagenet-a", "imagenet-r"):
        index = {wnid: i for i, wnid in enumerate(wnids("imagenet-1k"))}
        classes = {index[wnid] for wnid in wnids(source)}
        chosen = [(path, label) for path, label in val_photos() if label in classes]
    else:
        chosen = val_photos()
    return chosen[skip : skip + count]


def folder_of(source: str, label: int) -> str:
    """The class folder an ImageNet class has in a shift's released layout."""
    return str(label) if source == "imagenetv2" else wnids("imagenet-1k")[label]


def build_tree(root: Path, source: str, photos: list[tuple[Path, int]]) -> Path:
    """A tree with every class folder of ``source`` (empty where no photo falls) and ``photos``
    linked into the folders of their classes."""
    if source == "imagenetv2":
        folders = [str(i) for i in range(1000)]
    else:
        folders = list(wnids("imagenet-1k" if source == "imagenet-sketch" else source))
    for name in folders:
        (root / name).mkdir(parents=True)
    for path, label in photos:
        (root / folder_of(source, label) / path.name).symlink_to(path)
    return root


def build_val(root: Path, photos: list[tuple[Path, int]]) -> Path:
    """An ImageNet validation ImageFolder (<wnid>/<image>) of ``photos``."""
    for path, label in photos:
        folder = root / wnids("imagenet-1k")[label]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / path.name).symlink_to(path)
    return root
