"""Evaluation loops."""

from .clean import evaluate_clean

__all__ = ["evaluate_clean"]
