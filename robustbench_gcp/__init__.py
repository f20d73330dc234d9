"""robustbench-gcp: robustness benchmarking of GAP and GCP (iSQRT-COV) image classifiers.

The model API (``create_model``, ``list_models``, ...) is imported on first use, so that
importing the package, and ``gcp-robust --help``, do not load torch.
"""

from __future__ import annotations

from .version import __version__

_MODEL_API = (
    "ArchitectureInfo", "CHECKPOINTS", "CheckpointError", "CheckpointRecord", "CovarianceSqrt", "GCPHead",
    "LoadedCheckpoint", "Normalize", "UnknownModelError", "architecture_info", "build_architecture",
    "checkpoint_record", "covariance", "create_model", "guess_architecture", "list_checkpoints",
    "list_models", "load_checkpoint", "load_state", "matrix_sqrt", "read_checkpoint", "register_model",
    "representation_dim", "upper_triangle",
)
__all__ = ["__version__", *_MODEL_API]


def __getattr__(name: str):
    if name in _MODEL_API:
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
