"""ImageFolder datasets that yield uint8 tensors, and seeded class-balanced subsets."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Subset
from torchvision import datasets, transforms

from ..errors import Error
from .decode import Geometry


class DatasetError(Error, ValueError):
    """A dataset that cannot be read or evaluated as asked, with the fix in the message."""


RESIZE_FROM = 64  # input sizes from here on get the resize + center crop; smaller (32-px) sets are kept as they are


def eval_geometry(input_size: int) -> Geometry:
    """The paper's eval geometry at 224 px (resize 256, center crop 224); none for 32-px sets."""
    if input_size >= RESIZE_FROM:
        return Geometry(round(input_size * 256 / 224), input_size)
    return Geometry(None, None)


def eval_transform(input_size: int) -> transforms.Compose:
    """``eval_geometry`` as a PIL transform. Images stay uint8 (C, H, W): conversion to float
    happens on the model's device."""
    return eval_geometry(input_size).pil_transform()


def image_folder(root: str | Path, input_size: int) -> datasets.ImageFolder:
    """An ImageFolder (``root/<class>/<image>``) with the eval transform, with a clear error when empty."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist; pass an ImageFolder root (<class>/<image>)")
    try:
        return datasets.ImageFolder(str(root), transform=eval_transform(input_size))
    except (FileNotFoundError, RuntimeError) as error:
        raise DatasetError(f"dataset folder {root} holds no images in class subfolders ({error})") from None


def balanced_subset(dataset: datasets.ImageFolder, limit: int | None, seed: int = 0) -> Subset | datasets.ImageFolder:
    """A fixed, seeded subset of ``limit`` images spread evenly over the classes.

    Each class gives ``limit // classes`` images (the first classes one more for the remainder),
    chosen by a seeded permutation, so the same ``limit`` and ``seed`` always give the same images.
    """
    if limit is None or limit >= len(dataset):
        return dataset
    indices = _balanced_indices(dataset.targets, limit, seed)
    return Subset(dataset, indices)


def _balanced_indices(targets: Sequence[int], limit: int, seed: int) -> list[int]:
    labels = torch.as_tensor(targets)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    classes = labels.unique().tolist()
    quota = {c: limit // len(classes) + (i < limit % len(classes)) for i, c in enumerate(classes)}
    chosen: list[int] = []
    for index in order.tolist():
        label = int(labels[index])
        if quota[label] > 0:
            quota[label] -= 1
            chosen.append(index)
    return sorted(chosen)
