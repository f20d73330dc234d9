"""The released .npy files (CIFAR-10-C images, CIFAR-10-P videos, their labels), read without
unpickling and checked before the first cell: an array of another type would otherwise be read
as if it held uint8 pixels and give a wrong number instead of an error."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .folders import DatasetError

_NPY_MAGIC = b"\x93NUMPY"
_REWRITE = "restore it from the release, or write it again with numpy.save"


def load_array(path: Path) -> np.ndarray:
    """The array in ``path``, memory-mapped; a file that is no plain .npy array of numbers (text,
    pickled, truncated, object dtype) is a ``DatasetError`` naming it. The header is read first,
    so a truncated file is told apart from a damaged one and nothing is ever unpickled."""
    try:
        with open(path, "rb") as file:
            if file.read(len(_NPY_MAGIC)) == _NPY_MAGIC:
                file.seek(0)
                version = np.lib.format.read_magic(file)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(file)
                offset = file.tell()
            else:
                offset = None
    except (ValueError, EOFError) as error:
        raise DatasetError(f"{path} has a damaged .npy header ({error}); {_REWRITE}") from None
    except OSError as error:
        raise DatasetError(f"{path}: cannot read it ({error.strerror})") from None
    if offset is None:
        raise DatasetError(f"{path} is not a .npy file (it does not start with the NumPy header); {_REWRITE}")
    if dtype.hasobject:
        raise DatasetError(f"{path} holds Python objects ({dtype}), not numbers, and is not unpickled; {_REWRITE}")
    needed, size = offset + math.prod(shape) * dtype.itemsize, path.stat().st_size
    if size < needed:
        raise DatasetError(f"{path} is truncated: its header announces a {dtype} array of shape {shape} "
                           f"({needed} bytes) but the file has {size}; {_REWRITE}")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as error:
        raise DatasetError(f"{path} cannot be read as a .npy array ({error}); {_REWRITE}") from None


_SCALE = "(array * 255).round().astype(numpy.uint8)"


def check_pixels(array: np.ndarray, path: Path) -> None:
    """Released images are uint8 (0 to 255): floats in [0, 1] or wider integers would be read as
    if they were."""
    if array.dtype != np.uint8:
        hint = f"; floats in [0, 1] become uint8 with {_SCALE}" if array.dtype.kind == "f" else ""
        raise DatasetError(f"{path} holds {array.dtype} pixels where the released arrays hold uint8 (0 to 255){hint}")


def check_scaled(array: np.ndarray, path: Path) -> None:
    """[0, 1] floats cast to uint8 unscaled pass ``check_pixels`` as 0 and 1: the first rows, which
    real photos never leave at 0 and 1 alone, tell."""
    if array.size and array[:16].max() <= 1:
        raise DatasetError(f"{path} holds pixels of 0 and 1 only in its first images, as [0, 1] floats cast to "
                           f"uint8 unscaled; write the floats as {_SCALE}")


def read_labels(path: Path) -> np.ndarray:
    """A ``labels.npy``: a non-empty 1-D array of class indices from 0, as int64."""
    labels = load_array(path)
    if labels.dtype.kind not in "iu" or labels.ndim != 1 or not len(labels):
        raise DatasetError(f"{path} holds a {labels.dtype} array of shape {labels.shape}; labels.npy must be a "
                           "non-empty 1-D array of integer class indices")
    if labels.min() < 0:
        raise DatasetError(f"{path} holds the label {labels.min()}; class indices start at 0")
    return labels.astype(np.int64)
