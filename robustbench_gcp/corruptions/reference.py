"""The reference backend: the imagecorruptions package, image by image, on the CPU.

It is the oracle for the native functions and the fallback for users who want the package's
exact output. Each image gets a seed drawn from ``generator`` (or from its own generator), which
seeds NumPy's global RNG and the package's own ``seed=`` argument where it has one.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch
from torch import Tensor

from ..rng import Draws, Randomness
from .ops import to_uint8


def _package():
    try:
        import imagecorruptions
    except ImportError as error:  # pragma: no cover - exercised only without the dependency
        raise RuntimeError("backend 'reference' needs the imagecorruptions package: "
                           "pip install imagecorruptions-imaug") from error
    return imagecorruptions


def _seeds(n: int, generator: Randomness) -> list[int]:
    return Draws(n, torch.device("cpu"), generator).randint(0, 2**31 - 1).tolist()


def reference_corrupt(images: Tensor, name: str, severity: int, generator: Randomness) -> Tensor:
    """Run ``imagecorruptions.corrupt`` on each image (uint8 in, uint8 out) and return [0, 1] floats."""
    package = _package()
    takes_seed = "seed" in inspect.signature(package.corruption_dict[name]).parameters
    arrays = to_uint8(images.detach().cpu()).permute(0, 2, 3, 1).numpy()
    outputs = []
    for array, seed in zip(arrays, _seeds(len(arrays), generator)):  # the package works per image
        np.random.seed(seed)
        extra = {"seed": seed} if takes_seed else {}
        outputs.append(package.corrupt(array, severity=severity, corruption_name=name, **extra))
    batch = torch.from_numpy(np.stack(outputs)).permute(0, 3, 1, 2)
    return (batch.float() / 255).to(images.device, images.dtype)
