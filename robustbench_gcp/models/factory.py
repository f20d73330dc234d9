"""``create_model``: an architecture or a released checkpoint by name, with its weights loaded.

It sits on top of the registry (architectures) and the zoo (checkpoint records and loading),
as timm's factory does, so neither of those imports the other's caller.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from .registry import build_architecture
from .zoo import checkpoint_record, load_checkpoint


def create_model(
    name: str,
    num_classes: int | None = None,
    checkpoint: str | Path | None = None,
    **kwargs,
) -> nn.Module:
    """Build an architecture or a released checkpoint's architecture, optionally loading weights.

    ``name`` is an architecture (``resnet50_gcp``), an original constructor name
    (``resnet50_mpncov``) or a checkpoint record (``ResNet50_GCP_LRnorm``). The model is
    returned in eval mode when a checkpoint is loaded.
    """
    record = checkpoint_record(name)
    model = build_architecture(record.architecture if record else name, num_classes, **kwargs)
    if record:
        model.checkpoint_record = record
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
        model.eval()
    return model
