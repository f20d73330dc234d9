"""ImageNet-P / CIFAR-10-P perturbation sequences as batched tensor code on any device."""

from .api import (
    PerturbationError,
    names,
    perturb,
    perturb_to_uint8,
    sequence_length,
    sequence_level,
    sequence_streams,
    spec,
)
from .params import PROTOCOLS

__all__ = ["PROTOCOLS", "PerturbationError", "names", "perturb", "perturb_to_uint8", "sequence_length",
           "sequence_level", "sequence_streams", "spec"]
