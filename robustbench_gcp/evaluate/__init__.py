"""Evaluation loops."""

from .clean import Counts, evaluate_clean

__all__ = ["Counts", "evaluate_clean"]
