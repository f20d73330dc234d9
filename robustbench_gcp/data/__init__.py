"""Datasets and transforms."""

from .folders import balanced_subset, eval_transform, image_folder

__all__ = ["balanced_subset", "eval_transform", "image_folder"]
