"""``names`` and ``corrupt``: the public entry points of the corruption engine."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..choices import CORRUPTION_BACKENDS
from ..errors import Error, did_you_mean
from ..rng import Draws, Randomness
from . import blur, digital, noise, ops, spatter, weather
from .params import MIN_SIZE, PARAMETERS, PROTOCOLS

CorruptionFn = Callable[[Tensor, object, Draws, str], Tensor]

# Hendrycks order: the 15 benchmark corruptions by family, then the 4 extras.
_FAMILIES = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}
_EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
_COMMON = tuple(name for family in _FAMILIES.values() for name in family)
_SUBSETS = {"common": _COMMON, "extra": _EXTRA, "all": _COMMON + _EXTRA, **_FAMILIES}

_FUNCTIONS: dict[str, CorruptionFn] = {
    "gaussian_noise": noise.gaussian_noise, "shot_noise": noise.shot_noise,
    "impulse_noise": noise.impulse_noise, "speckle_noise": noise.speckle_noise,
    "defocus_blur": blur.defocus_blur, "glass_blur": blur.glass_blur, "motion_blur": blur.motion_blur,
    "zoom_blur": blur.zoom_blur, "gaussian_blur": blur.gaussian_blur,
    "snow": weather.snow, "frost": weather.frost, "fog": weather.fog, "spatter": spatter.spatter,
    "brightness": digital.brightness, "contrast": digital.contrast, "saturate": digital.saturate,
    "elastic_transform": digital.elastic_transform, "pixelate": digital.pixelate,
    "jpeg_compression": digital.jpeg_compression,
}

BACKENDS = CORRUPTION_BACKENDS
IMAGENET_C_JPEG_QUALITY = 85


class CorruptionError(Error, ValueError):
    """Bad input to the corruption engine, with the fix in the message."""


def names(subset: str = "common") -> list[str]:
    """Corruption names in Hendrycks order: common (15), extra (4), all, or one family."""
    if subset not in _SUBSETS:
        raise CorruptionError(f"unknown subset {subset!r}; choose one of {', '.join(_SUBSETS)}")
    return list(_SUBSETS[subset])


def check_name(name: str) -> None:
    if name not in _FUNCTIONS:
        raise CorruptionError(f"unknown corruption {name!r}{did_you_mean(name, names('all'))}; valid names: "
                              f"{', '.join(names('all'))}")


def check_images(images: Tensor, protocol: str, values: bool = True) -> None:
    """One clear message for each way a batch can be unfit for corruption; ``values=False``
    leaves out the check of the values (a device synchronisation)."""
    if not isinstance(images, Tensor):
        raise CorruptionError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if not images.is_floating_point():
        raise CorruptionError(
            f"images must be float in [0, 1], got dtype {images.dtype}; convert uint8 with images.float() / 255"
        )
    if images.dim() != 4 or images.shape[1] != 3:
        raise CorruptionError(f"images must have shape (N, 3, H, W), got {tuple(images.shape)}")
    if values and images.numel() and (not torch.isfinite(images).all() or images.min() < 0 or images.max() > 1):
        raise CorruptionError("images must be finite and in [0, 1]; divide 0–255 data by 255 and clamp")
    smallest = MIN_SIZE[protocol]
    if min(images.shape[-2:]) < smallest:
        raise CorruptionError(
            f"protocol {protocol!r} needs images of at least {smallest}×{smallest} px, got "
            f"{tuple(images.shape[-2:])}; resize first or choose another protocol"
        )


def is_severity(value: object) -> bool:
    """An integer from 1 to 5 (not a bool, not a float)."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 5


def check_options(name: str, severity: int, protocol: str, backend: str) -> None:
    check_name(name)
    if protocol not in PROTOCOLS:
        raise CorruptionError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if not is_severity(severity):
        raise CorruptionError(f"severity must be an integer from 1 to 5, got {severity!r}")
    if backend not in BACKENDS:
        raise CorruptionError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "reference" and protocol != "imagecorruptions":
        raise CorruptionError(
            f"backend 'reference' runs the imagecorruptions package, so it serves protocol "
            f"'imagecorruptions' only, not {protocol!r}"
        )


def corrupt(
    images: Tensor,
    name: str,
    severity: int,
    *,
    protocol: str = "imagenet-c",
    backend: str = "native",
    generator: Randomness = None,
    check_input: bool = True,
) -> Tensor:
    """Corrupt a batch (N, 3, H, W) of float images in [0, 1] on any device.

    ``generator`` is one ``torch.Generator`` for the batch, or ``ImageStreams`` with one stream per
    image (``rng.image_streams``: then each image's result depends on nothing but its key, on any
    device and in any batch). Same shape, dtype and device out. ``check_input=False`` skips the
    value checks of ``images`` (a device synchronisation), for callers that made them from uint8.
    """
    out = _corrupt_unsaved(images, name, severity, protocol, backend, generator, check_input)
    if protocol == "cifar10-c":  # the released .npy files hold np.uint8 of the output
        out = ops.truncate_to_uint8_levels(out)
    elif protocol == "imagenet-c":  # the released files are np.uint8 of the output, saved as JPEG q85
        out = ops.jpeg_round_trip(ops.truncate_to_uint8_levels(out), IMAGENET_C_JPEG_QUALITY)
    return out.to(images.dtype)


def corrupt_to_uint8(
    images: Tensor, name: str, severity: int, *, protocol: str = "imagenet-c", backend: str = "native",
    generator: Randomness = None,
    check_input: bool = True,
) -> Tensor:
    """The corrupted batch as the generators store it before writing a file: np.uint8(255·x).

    Writing these as JPEG q85 (imagenet-c) or PNG gives the released file formats; ``corrupt``
    applies the same storage step in memory.
    """
    return ops.truncate_to_uint8(_corrupt_unsaved(images, name, severity, protocol, backend, generator, check_input))


def _corrupt_unsaved(
    images: Tensor, name: str, severity: int, protocol: str, backend: str, generator: Randomness,
    check_input: bool,
) -> Tensor:
    check_options(name, severity, protocol, backend)
    check_images(images, protocol, values=check_input)
    if images.shape[0] == 0:
        return images.clone()
    if backend == "reference":
        from .reference import reference_corrupt

        return reference_corrupt(images, name, severity, generator)
    work = images.to(torch.float32) if images.dtype in (torch.float16, torch.bfloat16) else images
    draws = Draws(images.shape[0], images.device, generator)
    return _FUNCTIONS[name](work, PARAMETERS[protocol][name][severity - 1], draws, protocol)
