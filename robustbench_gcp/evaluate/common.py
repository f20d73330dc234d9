"""What the evaluation loops share: loading the model, checking it against the data."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from ..data.sources import DatasetError, EvalSource, open_source, read_class_index
from ..models import create_model


class EvaluationError(ValueError):
    """An evaluation that cannot run as configured, with the fix in the message."""


def load_eval_model(name: str, num_classes: int | None, checkpoint: Path | None, seed: int) -> nn.Module:
    """The model in eval mode; without a checkpoint its random weights come from ``seed``."""
    if checkpoint is None:
        warnings.warn(f"no --checkpoint given: evaluating {name} with random weights (seed {seed})", stacklevel=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return create_model(name, num_classes=num_classes, checkpoint=checkpoint).eval()


def model_classes(model: nn.Module) -> int:
    """Size of the classifier: the last Linear layer of every zoo model."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1].out_features


def open_checked_source(kind: str, data: Path, model: nn.Module, model_name: str, clean_data: Path | None,
                        class_index: Path | None) -> EvalSource:
    """Open the data and check that its classes fit the model, with one clear message otherwise."""
    try:
        index = read_class_index(class_index) if class_index else None
        source = open_source(kind, data, model.architecture.input_size, clean_data, index)
    except DatasetError as error:
        raise EvaluationError(str(error)) from None
    classes = model_classes(model)
    if source.num_classes != classes:
        raise EvaluationError(
            f"{data} has {source.num_classes} classes but {model_name} outputs {classes}; pass "
            "--num-classes, or --class-index to map a subset of ImageNet class folders to model outputs"
        )
    return source


def prepare(model: nn.Module, device: torch.device) -> nn.Module:
    """The model on ``device``, channels_last on CUDA (faster convolutions there)."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


def as_model_input(batch: torch.Tensor) -> torch.Tensor:
    """A batch in the memory format ``prepare`` gives the model: channels_last on CUDA."""
    return batch.contiguous(memory_format=torch.channels_last) if batch.is_cuda else batch
