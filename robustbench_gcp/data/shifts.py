"""Natural distribution shifts in their released folder layouts.

- ImageNet-A and ImageNet-R: 200 ImageNet classes each, one folder per WordNet id. A model is
  scored over those 200 classes only (the argmax, and the top 5, of the 200 logits that belong
  to them), as their authors' evaluation code does.
- ImageNet-Sketch: the 1,000 ImageNet classes, one folder per WordNet id.
- ImageNetV2 (matched-frequency, threshold0.7, top-images): 1,000 folders named by the class
  index, 0 to 999 (numerically, not in the string order an ImageFolder would sort them).

The class lists ship with the package (``wnids/``): ``imagenet-1k.txt`` is the sorted ImageNet
synset list (the output order of every ImageNet model; ``all_wnids`` in hendrycks/imagenet-r
``eval.py``), ``imagenet-r.txt`` the ``imagenet_r_wnids`` of that file, and ``imagenet-a.txt``
the classes ``thousand_k_to_200`` maps in hendrycks/natural-adv-examples ``eval.py``. A tree is
checked against its layout before anything runs; a tree of another layout is named as such.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

from ..choices import SHIFT_SOURCES, V2_VARIANTS
from ..errors import counted
from .folders import DatasetError
from .labels import flat_samples
from .sources import files_fingerprint

IMAGENET_CLASSES = 1000
TITLES = {"imagenet-a": "ImageNet-A", "imagenet-r": "ImageNet-R", "imagenet-sketch": "ImageNet-Sketch",
          "imagenetv2": "ImageNetV2"}
_V2_FOLDERS = tuple(str(i) for i in range(IMAGENET_CLASSES))


@cache
def wnids(name: str) -> tuple[str, ...]:
    """A shipped class list (``imagenet-1k``, ``imagenet-a``, ``imagenet-r``), in output order."""
    text = resources.files(__package__).joinpath("wnids", f"{name}.txt").read_text()
    return tuple(line.strip() for line in text.splitlines() if line.strip())


@cache
def imagenet_index() -> dict[str, int]:
    """WordNet id → ImageNet output index (the sorted synset order)."""
    return {wnid: i for i, wnid in enumerate(wnids("imagenet-1k"))}


def shift_key(source: str, variant: str | None) -> str:
    """The name of a shifted set: ``imagenet-a``, ``imagenetv2-matched-frequency``."""
    return f"{source}-{variant}" if variant else source


def scored_outputs(source: str) -> tuple[int, ...] | None:
    """The model outputs a set is scored over (its 200 classes for A and R; None: all 1,000)."""
    if source in ("imagenet-a", "imagenet-r"):
        index = imagenet_index()
        return tuple(index[wnid] for wnid in wnids(source))
    return None


def _folders(source: str) -> tuple[str, ...]:
    """The class folders a released tree has, in label order."""
    if source == "imagenetv2":
        return _V2_FOLDERS
    return wnids("imagenet-1k" if source == "imagenet-sketch" else source)


@dataclass(frozen=True)
class ShiftSet:
    """A checked shifted set: its images with labels (positions among ``outputs``, or ImageNet
    output indices when ``outputs`` is None) and a fingerprint of its files."""

    source: str
    variant: str | None
    root: Path
    samples: list[tuple[str, int]]
    outputs: tuple[int, ...] | None
    fingerprint: str

    @property
    def key(self) -> str:
        return shift_key(self.source, self.variant)

    @property
    def classes(self) -> int:
        return len(self.outputs) if self.outputs else IMAGENET_CLASSES


def _layout(names: set[str]) -> str | None:
    """Which released layout a set of class folder names is."""
    for source in SHIFT_SOURCES:
        if names == set(_folders(source)):
            return source
    return None


def _describe(source: str) -> str:
    if source == "imagenetv2":
        return "1000 class folders named 0 to 999 (the ImageNetV2 layout)"
    if source == "imagenet-sketch":
        return "the 1000 ImageNet class folders (the layout of ImageNet-Sketch and of the ImageNet validation set)"
    return f"the 200 class folders of {TITLES[source]}"


def _class_folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _layout_problem(source: str, root: Path, found: list[str]) -> str:
    """One line on why ``found`` is not the layout of ``source``, and the fix."""
    expected = _folders(source)
    title, names = TITLES[source], set(found)
    other = _layout(names)
    if other is not None:
        return (f"--data {root} holds {_describe(other)}, not the layout of {title}; pass --source {other}"
                + (" (and its --variant)" if other == "imagenetv2" else ""))
    below = next((root / name for name in found if _layout(set(_class_folders(root / name))) == source), None)
    if below is not None:
        return f"--data {root} is not {title}'s class folder level; did you mean --data {below}?"
    what = "WordNet ids" if source != "imagenetv2" else "class indices 0 to 999"
    unknown = sorted(names - set(expected))
    if unknown:
        return (f"--data {root}: class folders {unknown[:3]} are not {title} classes ({title} has "
                f"{counted(len(expected), 'class folder')} named by {what}); pass the released {title} folder")
    missing = sorted(set(expected) - names, key=expected.index)
    which = f"{missing[0]} is" if len(missing) == 1 else f"{missing[0]} and {len(missing) - 1} more are"
    return (f"--data {root} has {counted(len(found), 'class folder')} where {title} has {len(expected)} (named by "
            f"{what}); {which} missing: restore them from the release")


def open_shift(source: str, root: str | Path, variant: str | None = None) -> ShiftSet:
    """The released tree of a shift, checked: exactly its class folders, and images in them."""
    if source not in SHIFT_SOURCES:
        raise DatasetError(f"--source {source!r}: choose one of {', '.join(SHIFT_SOURCES)}")
    if source == "imagenetv2":
        variant = variant or V2_VARIANTS[0]
        if variant not in V2_VARIANTS:
            raise DatasetError(f"--variant {variant!r}: ImageNetV2 has {', '.join(V2_VARIANTS)}")
    elif variant is not None:
        raise DatasetError(f"--variant {variant} is one of ImageNetV2's; {TITLES[source]} has no variants")
    root = Path(root)
    title = TITLES[source]
    if not root.is_dir():
        raise DatasetError(f"--data {root} does not exist; pass the folder of the released {title} "
                           "(<class>/<image>)")
    found = _class_folders(root)
    if set(found) != set(_folders(source)):
        raise DatasetError(_layout_problem(source, root, found))
    labels = {name: label for label, name in enumerate(_folders(source))}
    samples = make_dataset(str(root), labels, extensions=IMG_EXTENSIONS, allow_empty=True)
    if not samples:
        raise DatasetError(f"--data {root} has the class folders of {title} but no images in them")
    return ShiftSet(source, variant, root, samples, scored_outputs(source),
                    files_fingerprint(path for path, _ in samples))


def clean_samples(root: str | Path, outputs: Sequence[int] | None,
                  labels: Path | None = None) -> list[tuple[str, int]]:
    """The ImageNet validation images a shift's clean accuracy is measured on: all of them, or
    for A and R those of their 200 classes, labelled by position among ``outputs`` (the
    class-subsampled ImageNet of Taori et al.). ``labels``: a flat folder's labels file."""
    root, index = Path(root), imagenet_index()
    if labels is not None:
        samples = flat_samples(root, Path(labels), index)
    else:
        if not root.is_dir():
            raise DatasetError(f"--clean-data {root} does not exist; pass the ImageNet validation set "
                               "(<wnid>/<image>, or a flat folder with --labels)")
        found = _class_folders(root)
        unknown = [name for name in found if name not in index]
        if unknown or not found:
            raise DatasetError(f"--clean-data {root}: {'folders ' + str(unknown[:3]) if unknown else 'no folders'} "
                               "where ImageNet class folders (WordNet ids) belong; pass the ImageNet validation "
                               "set (<wnid>/<image>, or a flat folder with --labels)")
        samples = make_dataset(str(root), {name: index[name] for name in found}, extensions=IMG_EXTENSIONS,
                               allow_empty=True)
    if outputs is not None:
        position = {output: i for i, output in enumerate(outputs)}
        samples = [(path, position[label]) for path, label in samples if label in position]
    if not samples:
        kind = f"of the {len(outputs)} classes this shift is scored over" if outputs else "of ImageNet classes"
        raise DatasetError(f"--clean-data {root} holds no images {kind}; pass the ImageNet validation set")
    return samples


def shift_keys() -> list[str]:
    """Every shifted set by name, ImageNetV2's variants apart: what a given trend is keyed by."""
    return [shift_key(source, variant) for source in SHIFT_SOURCES
            for variant in (V2_VARIANTS if source == "imagenetv2" else (None,))]
