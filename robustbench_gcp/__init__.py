"""robustbench-gcp: robustness benchmarking of GAP and GCP (iSQRT-COV) image classifiers."""

from .models import *  # noqa: F401,F403
from .models import __all__ as _model_api

__version__ = "0.1.0"
__all__ = ["__version__", *_model_api]
