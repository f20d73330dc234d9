"""The model zoo: GAP and GCP backbones registered by name, and the released checkpoints."""

from . import cifar_resnet, mobilenetv2, resnet, shufflenetv2  # noqa: F401  (register architectures)
from .factory import create_model
from .gcp import CovarianceSqrt, GCPHead, covariance, matrix_sqrt, representation_dim, upper_triangle
from .normalize import Normalize
from .registry import (
    ArchitectureInfo,
    UnknownModelError,
    architecture_info,
    build_architecture,
    list_models,
    register_model,
)
from .zoo import (
    CHECKPOINTS,
    CheckpointError,
    CheckpointRecord,
    LoadedCheckpoint,
    checkpoint_record,
    guess_architecture,
    list_checkpoints,
    load_checkpoint,
    load_state,
    read_checkpoint,
)

__all__ = [
    "ArchitectureInfo", "CHECKPOINTS", "CheckpointError", "CheckpointRecord", "CovarianceSqrt", "GCPHead",
    "LoadedCheckpoint", "Normalize", "UnknownModelError", "architecture_info", "build_architecture",
    "checkpoint_record", "covariance", "create_model", "guess_architecture", "list_checkpoints",
    "list_models", "load_checkpoint", "load_state", "matrix_sqrt", "read_checkpoint", "register_model",
    "representation_dim", "upper_triangle",
]
