"""All 19 ImageNet-C corruptions and the 15 of ImageNet-C-bar / CIFAR-10-C-bar as batched tensor
functions, on any device.

``corrupt(images, name, severity, protocol=..., backend=..., generator=...)`` corrupts a batch
(N, 3, H, W) of float images in [0, 1]; ``names(subset)`` lists them (Hendrycks order for
ImageNet-C, the generator's table order for a C-bar protocol).
"""

from .api import (
    BACKENDS,
    CorruptionError,
    benchmark_names,
    corrupt,
    corrupt_to_uint8,
    known_names,
    names,
    protocol_names,
)
from .params import ALL_PROTOCOLS, C_BAR_PROTOCOLS, PROTOCOLS

__all__ = ["ALL_PROTOCOLS", "BACKENDS", "C_BAR_PROTOCOLS", "CorruptionError", "PROTOCOLS", "benchmark_names",
           "corrupt", "corrupt_to_uint8", "known_names", "names", "protocol_names"]
