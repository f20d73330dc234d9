"""``names`` and ``perturb``: the public entry points of the perturbation engine."""

from __future__ import annotations

import torch
from torch import Tensor

from ..corruptions.api import CorruptionError
from ..errors import did_you_mean
from ..rng import Draws, ImageStreams, Randomness, image_streams
from ..stability import DIFFICULTIES, NOISE_PERTURBATIONS, ORDER, TEST_PERTURBATIONS, VALIDATION_PERTURBATIONS
from .params import PROTOCOLS, SPECS, ProtocolSpec
from .sequences import GENERATORS

SUBSETS = ("test", "validation", "all")


class PerturbationError(CorruptionError):
    """Bad input to the perturbation engine, with the fix in the message."""


def names(subset: str = "test", protocol: str = "imagenet-p") -> list[str]:
    """Perturbation names in the evaluator's order: a protocol's test (10) or validation (4) set, or all."""
    if subset not in SUBSETS:
        raise PerturbationError(f"unknown subset {subset!r}; choose one of {', '.join(SUBSETS)}")
    spec(protocol)
    if subset == "all":
        return list(ORDER)
    return list((TEST_PERTURBATIONS if subset == "test" else VALIDATION_PERTURBATIONS)[protocol])


def check_name(name: str) -> None:
    if name not in GENERATORS:
        raise PerturbationError(f"unknown perturbation {name!r}{did_you_mean(name, names('all'))}; valid names: "
                                f"{', '.join(names('all'))}")


def spec(protocol: str) -> ProtocolSpec:
    if protocol not in PROTOCOLS:
        raise PerturbationError(f"unknown perturbation protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    return SPECS[protocol]


def sequence_length(name: str, protocol: str) -> int:
    """Frames per video of a perturbation (31 for most; translate 41 / 16, CIFAR motion blur 21)."""
    check_name(name)
    return spec(protocol).length(name)


def sequence_level(name: str, difficulty: int) -> int:
    """Which generated sequence a difficulty reads: the noise sequences have one per difficulty,
    the others one for all (difficulty d compares frames d apart)."""
    return difficulty if name in NOISE_PERTURBATIONS else 1


def sequence_streams(seed: int, indices: Tensor, name: str, level: int, device: torch.device) -> ImageStreams:
    """The per-image streams of one generated sequence: what makes a video the same in an
    evaluation, an export and any batch or device."""
    return image_streams(seed, indices, f"perturbation/{name}", level, device)


def perturb_to_uint8(images: Tensor, name: str, *, protocol: str = "imagenet-p", difficulty: int = 1,
                     generator: Randomness = None) -> Tensor:
    """The perturbation sequences of a batch: float images (N, 3, H, W) in [0, 1] → uint8 frames
    (N, T, 3, size, size), as the generators stored them.

    For ``imagenet-p`` the images are the clean photos resized to a 256-px shorter side and
    centre-cropped to ``spec('imagenet-p').canvas`` px (zero-padded past the edges): the
    geometric sequences move pixels from outside the 224-px crop into it. ``generator`` is one
    ``torch.Generator`` or per-image ``ImageStreams``; frame i of a video draws from its own
    repetition of the image's stream, so a video depends on nothing but its image's key.
    """
    check_name(name)
    protocol_spec = spec(protocol)
    if difficulty not in DIFFICULTIES:
        raise PerturbationError(f"difficulty must be 1, 2 or 3, got {difficulty!r}")
    if not isinstance(images, Tensor) or not images.is_floating_point() or images.dim() != 4 \
            or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise PerturbationError(f"images must be float (N, 3, H, W) in [0, 1], got {shape}")
    if min(images.shape[-2:]) < protocol_spec.size or images.shape[-1] != images.shape[-2]:
        raise PerturbationError(
            f"protocol {protocol!r} takes square images of at least {protocol_spec.size} px (best "
            f"{protocol_spec.canvas} px), got {tuple(images.shape[-2:])}")
    work = images.to(torch.float32) if images.dtype in (torch.float16, torch.bfloat16) else images

    def frame_draws(frame: int) -> Draws:
        randomness = generator.repetition(frame) if isinstance(generator, ImageStreams) else generator
        return Draws(images.shape[0], images.device, randomness)

    level = sequence_level(name, difficulty)
    frames = GENERATORS[name](work, protocol_spec, frame_draws, level, protocol)
    return torch.stack(list(frames), dim=1)


def perturb(images: Tensor, name: str, *, protocol: str = "imagenet-p", difficulty: int = 1,
            generator: Randomness = None) -> Tensor:
    """``perturb_to_uint8`` as float frames in [0, 1] in the dtype of ``images``."""
    return perturb_to_uint8(images, name, protocol=protocol, difficulty=difficulty,
                            generator=generator).to(images.dtype) / 255
