"""Records of the released checkpoints, and loading of checkpoint files into zoo models.

The 40 ImageNet records are the released GCP_Optimization models (GAP and GCP heads, three LR
schedules, four ``_128`` variants) with the top-1/top-5 their authors reported. The files are
not downloaded by this package: users pass the path of the file they hold.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import Error
from .registry import architecture_info, build_architecture, list_models, register_other_names


@dataclass(frozen=True)
class CheckpointRecord:
    """One released checkpoint: what it is, how it was trained, what its authors reported."""

    name: str
    architecture: str
    head: str
    reduction_dim: int | None
    lr_mode: str
    top1: float
    top5: float | None
    filename: str
    dataset: str = "imagenet"


class CheckpointError(Error, ValueError):
    """A checkpoint file that cannot be read, or that does not fit the model."""


# (record family prefix, GAP architecture, GCP architecture, GCP-128 architecture or None)
_FAMILIES = {
    "MobileNetV2": ("mobilenet_v2_gap", "mobilenet_v2_gcp", "mobilenet_v2_gcp128"),
    "ShuffleNetV2": ("shufflenet_v2_x1_0_gap", "shufflenet_v2_x1_0_gcp", None),
    "ResNet18": ("resnet18_gap", "resnet18_gcp", None),
    "ResNet34": ("resnet34_gap", "resnet34_gcp", None),
    "ResNet50": ("resnet50_gap", "resnet50_gcp", "resnet50_gcp128"),
    "ResNet101": ("resnet101_gap", "resnet101_gcp", None),
}
_LR_MODES = ("LRnorm", "LRfast", "LRadju")
# Reported top-1/top-5 (README of the release): GAP LRnorm, LRfast, LRadju, GCP LRnorm, LRfast, LRadju.
_REPORTED = {
    "MobileNetV2": ((71.62, 90.18), (69.29, 89.01), (71.27, 90.08), (74.39, 91.86), (72.45, 90.51), (73.97, 91.53)),
    "ShuffleNetV2": ((67.96, 87.84), (66.13, 86.54), (67.15, 87.35), (71.83, 90.04), (70.29, 89.00), (71.17, 89.74)),
    "ResNet18": ((70.47, 89.59), (66.02, 86.69), (69.62, 89.00), (75.48, 92.23), (72.02, 89.97), (74.86, 91.81)),
    "ResNet34": ((74.19, 91.60), (69.88, 89.25), (73.13, 91.14), (77.11, 93.33), (73.88, 91.42), (76.81, 93.04)),
    "ResNet50": ((76.02, 92.97), (71.08, 90.04), (75.32, 92.47), (78.56, 94.09), (75.31, 92.11), (78.03, 93.95)),
    "ResNet101": ((77.67, 93.83), (73.13, 91.06), (77.53, 93.53), (79.47, 94.71), (76.38, 92.82), (79.18, 94.47)),
}
# The `_128` releases: (family, lr mode) -> reported top-1/top-5.
_REPORTED_128 = {
    ("MobileNetV2", "LRnorm"): (73.28, 91.26),
    ("MobileNetV2", "LRadju"): (72.58, 90.87),
    ("ResNet50", "LRnorm"): (78.02, 94.02),
    ("ResNet50", "LRadju"): (77.72, 93.73),
}
# Widely used pretrained CIFAR-10 ResNets (BSD-2); top-1 = 100 - reported test error.
_CIFAR = {20: (91.73, "12fca82f"), 32: (92.63, "d509ac18"), 44: (93.10, "014dd654"), 56: (93.39, "4bfd9763")}


def _imagenet_record(
    family: str, head: str, lr_mode: str, architecture: str, reported: tuple[float, float], suffix: str = ""
) -> CheckpointRecord:
    name = f"{family}_{head.upper()}_{lr_mode}{suffix}"
    info = architecture_info(architecture)
    return CheckpointRecord(
        name=name, architecture=architecture, head=head, reduction_dim=info.reduction_dim,
        lr_mode=lr_mode, top1=reported[0], top5=reported[1], filename=f"{name}.pth.tar",
    )


def _build_records() -> dict[str, CheckpointRecord]:
    records = []
    for family, (gap, gcp, gcp128) in _FAMILIES.items():
        reported = _REPORTED[family]
        for i, mode in enumerate(_LR_MODES):
            records.append(_imagenet_record(family, "gap", mode, gap, reported[i]))
            records.append(_imagenet_record(family, "gcp", mode, gcp, reported[3 + i]))
            if (family, mode) in _REPORTED_128:
                records.append(_imagenet_record(family, "gcp", mode, gcp128, _REPORTED_128[family, mode], "_128"))
    for depth, (top1, digest) in _CIFAR.items():
        records.append(CheckpointRecord(
            name=f"CIFAR10_ResNet{depth}_GAP", architecture=f"cifar_resnet{depth}_gap", head="gap",
            reduction_dim=None, lr_mode="multistep", top1=top1, top5=None,
            filename=f"resnet{depth}-{digest}.th", dataset="cifar10",
        ))
    return {r.name: r for r in records}


CHECKPOINTS: dict[str, CheckpointRecord] = _build_records()
register_other_names(list(CHECKPOINTS))


def checkpoint_record(name: str) -> CheckpointRecord | None:
    """The record of a released checkpoint, or None when ``name`` is not one."""
    return CHECKPOINTS.get(name)


def list_checkpoints(pattern: str | None = None) -> list[CheckpointRecord]:
    """Checkpoint records, optionally filtered by a glob pattern (case-insensitive)."""
    return [r for n, r in sorted(CHECKPOINTS.items()) if not pattern or fnmatch.fnmatch(n.lower(), pattern.lower())]


@dataclass(frozen=True)
class LoadedCheckpoint:
    """What was in a checkpoint file besides the weights."""

    path: Path
    sha256: str
    epoch: int | None
    arch: str | None
    best_acc1: float | None


def identify_record(filename: str, sha256: str) -> dict:
    """Which released checkpoint a file is: by its file name, and where the release publishes a
    hash (the CIFAR files carry the first 8 hex digits of their SHA-256 in their name), whether the
    file's SHA-256 matches it."""
    for record in CHECKPOINTS.values():
        stem = Path(record.filename).stem
        published = stem.rsplit("-", 1)[-1] if record.dataset == "cifar10" else None
        if published and sha256.startswith(published):
            return {"record": record.name, "reported_top1": record.top1, "sha256_matches_record": True}
        if filename == record.filename:
            return {"record": record.name, "reported_top1": record.top1,
                    "sha256_matches_record": False if published else None}
    return {"record": None, "reported_top1": None, "sha256_matches_record": None}


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a checkpoint file; return its state_dict (``module.`` stripped) and the whole payload.

    Accepts the original ``.pth.tar`` (``state_dict``, ``best_acc1``, ``epoch``, ``arch``,
    ``optimizer``, CUDA tensors), the CIFAR files' ``best_prec1`` variant and a bare state_dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file; pass the path of a downloaded .pth.tar/.th file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001  (untrusted bytes: any failure to unpickle means "not a checkpoint")
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"checkpoint {path}: not a readable PyTorch checkpoint ({first_line}); "
            "check that the download is complete and that it is a torch.save file"
        ) from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {path}: holds a {type(payload).__name__}, expected a dict or state_dict")
    state = payload.get("state_dict", payload)
    if not isinstance(state, dict) or not state or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(
            f"checkpoint {path}: no state_dict of named tensors found (keys: {sorted(map(str, payload))[:8]}); "
            "expected the original format with a 'state_dict' entry or a bare state_dict"
        )
    if all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    return _add_batch_counters(state), payload


def _add_batch_counters(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Files saved before PyTorch 0.4.1 lack BN ``num_batches_tracked``; BN itself fills 0 then."""
    counters = {
        key[: -len("running_var")] + "num_batches_tracked"
        for key in state
        if key.endswith(".running_var") or key == "running_var"
    }
    missing = {key: torch.tensor(0, dtype=torch.long) for key in counters if key not in state}
    return {**state, **missing}


@functools.lru_cache(maxsize=None)
def _signature(architecture: str) -> dict[str, tuple[int, ...]]:
    """Key → shape of an architecture's state_dict, built on the meta device (no memory)."""
    with torch.device("meta"):
        model = build_architecture(architecture)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def guess_architecture(state: dict[str, torch.Tensor]) -> tuple[str, float]:
    """The registered architecture whose state_dict layout best matches ``state``, and the match share."""
    given = {key: tuple(value.shape) for key, value in state.items()}

    def score(name: str) -> float:
        expected = _signature(name)
        same = sum(1 for key, shape in given.items() if expected.get(key) == shape)
        return same / len(set(given) | set(expected))

    best = max(list_models(), key=score)
    return best, score(best)


def _describe_mismatch(model: nn.Module, state: dict[str, torch.Tensor]) -> str:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{key}: file {tuple(state[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in sorted(set(state) & set(expected))
        if state[key].shape != expected[key].shape
    ]

    def listing(label: str, items: list[str]) -> str:
        more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
        return f"{label} ({len(items)}): {', '.join(items[:3])}{more}" if items else ""

    return "; ".join(part for part in (listing("missing keys", missing), listing("unexpected keys", unexpected),
                                       listing("shape mismatches", shapes)) if part)


def load_state(model: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load a state_dict read from ``path`` into ``model`` (strict), with one clear line when it does not fit."""
    mismatch = _describe_mismatch(model, state)
    if mismatch:
        target = getattr(getattr(model, "architecture", None), "name", type(model).__name__)
        guess, share = guess_architecture(state)
        raise CheckpointError(
            f"checkpoint {path} does not fit architecture {target!r} ({mismatch}); "
            f"the file most likely holds {guess!r} ({share:.0%} of its tensors match): use --model {guess}"
            + (" with the right --num-classes" if share < 1 else "")
        )
    model.load_state_dict(state, strict=True)


def load_checkpoint(model: nn.Module, path: str | Path) -> LoadedCheckpoint:
    """Load a checkpoint file into ``model`` (strict), with one clear error when it does not fit."""
    path = Path(path)
    state, payload = read_checkpoint(path)
    load_state(model, state, path)
    best = payload.get("best_acc1", payload.get("best_prec1"))
    epoch = payload.get("epoch")
    return LoadedCheckpoint(
        path=path,
        sha256=file_sha256(path),
        epoch=int(epoch) if epoch is not None else None,
        arch=payload.get("arch") if isinstance(payload.get("arch"), str) else None,
        best_acc1=float(best) if best is not None else None,
    )
