"""All 19 ImageNet-C corruptions as batched tensor functions, on any device.

``corrupt(images, name, severity, protocol=..., backend=..., generator=...)`` corrupts a batch
(N, 3, H, W) of float images in [0, 1]; ``names(subset)`` lists them in Hendrycks order.
"""

from .api import BACKENDS, CorruptionError, corrupt, corrupt_to_uint8, names
from .params import PROTOCOLS

__all__ = ["BACKENDS", "CorruptionError", "PROTOCOLS", "corrupt", "corrupt_to_uint8", "names"]
