"""``names`` and ``corrupt``: the public entry points of the corruption engine."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..choices import CORRUPTION_BACKENDS
from ..errors import Error, did_you_mean
from ..rng import Draws, Randomness
from . import blur, digital, noise, ops, spatter, weather
from .cbar import CORRUPTIONS as C_BAR_FUNCTIONS
from .cbar import CBarCorruption
from .params import ALL_PROTOCOLS, C_BAR_PROTOCOLS, MIN_SIZE, PARAMETERS

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
# Each C-bar protocol's 10 corruptions, in the order of its generator's table; "c-bar" is all 15.
_C_BAR = {protocol: tuple(PARAMETERS[protocol]) for protocol in C_BAR_PROTOCOLS}
_C_BAR_ALL = tuple(dict.fromkeys(name for names_ in _C_BAR.values() for name in names_))
_SUBSETS = {"common": _COMMON, "extra": _EXTRA, "all": _COMMON + _EXTRA, **_FAMILIES, **_C_BAR, "c-bar": _C_BAR_ALL}

_FUNCTIONS: dict[str, CorruptionFn] = {
    "gaussian_noise": noise.gaussian_noise, "shot_noise": noise.shot_noise,
    "impulse_noise": noise.impulse_noise, "speckle_noise": noise.speckle_noise,
    "defocus_blur": blur.defocus_blur, "glass_blur": blur.glass_blur, "motion_blur": blur.motion_blur,
    "zoom_blur": blur.zoom_blur, "gaussian_blur": blur.gaussian_blur,
    "snow": weather.snow, "frost": weather.frost, "fog": weather.fog, "spatter": spatter.spatter,
    "brightness": digital.brightness, "contrast": digital.contrast, "saturate": digital.saturate,
    "elastic_transform": digital.elastic_transform, "pixelate": digital.pixelate,
    "jpeg_compression": digital.jpeg_compression,
    **C_BAR_FUNCTIONS,
}

BACKENDS = CORRUPTION_BACKENDS
IMAGENET_C_JPEG_QUALITY = 85
# The storage step of each protocol's released files: uint8 arrays (np.uint8 of the output) or
# JPEG q85 of them (ImageNet-C and ImageNet-C-bar); imagecorruptions keeps the float output.
JPEG_PROTOCOLS = ("imagenet-c", "imagenet-c-bar")
UINT8_PROTOCOLS = ("cifar10-c", "cifar10-c-bar")


class CorruptionError(Error, ValueError):
    """Bad input to the corruption engine, with the fix in the message."""


def names(subset: str = "common") -> list[str]:
    """Corruption names in Hendrycks order: common (15), extra (4), all (the 19 of ImageNet-C),
    one family, or a C-bar protocol's 10 (imagenet-c-bar, cifar10-c-bar; c-bar: all 15 of them)."""
    if subset not in _SUBSETS:
        raise CorruptionError(f"unknown subset {subset!r}; choose one of {', '.join(_SUBSETS)}")
    return list(_SUBSETS[subset])


def known_names() -> list[str]:
    """Every corruption the engine knows: the 19 of ImageNet-C, then the 15 of the C-bar sets."""
    return list(_COMMON + _EXTRA + _C_BAR_ALL)


def protocol_names(protocol: str) -> list[str]:
    """The corruptions a protocol generates: a C-bar protocol's 10, else the 19 of ImageNet-C."""
    return names(protocol) if protocol in C_BAR_PROTOCOLS else names("all")


def benchmark_names(protocol: str | None) -> list[str]:
    """What a protocol's mean error and mCE average over: a C-bar protocol's 10, else the 15
    benchmark corruptions of ImageNet-C."""
    return names(protocol) if protocol in C_BAR_PROTOCOLS else names("common")


def check_name(name: str) -> None:
    if name not in _FUNCTIONS:
        raise CorruptionError(f"unknown corruption {name!r}{did_you_mean(name, known_names())}; valid names: "
                              f"{', '.join(names('all'))}, and those of C-bar: {', '.join(_C_BAR_ALL)}")


def check_protocol(protocol: str) -> None:
    if protocol not in ALL_PROTOCOLS:
        raise CorruptionError(f"unknown protocol {protocol!r}; choose one of {', '.join(ALL_PROTOCOLS)}")


def check_name_in_protocol(name: str, protocol: str) -> None:
    """A corruption only runs in the protocols that define it: the 19 of ImageNet-C in
    imagecorruptions / imagenet-c / cifar10-c, each C-bar set in its own protocol."""
    check_name(name)
    check_protocol(protocol)
    if name not in protocol_names(protocol):
        homes = [p for p in ALL_PROTOCOLS if name in protocol_names(p)]
        own = ", ".join(protocol_names(protocol)) if protocol in C_BAR_PROTOCOLS else "the 19 of ImageNet-C"
        raise CorruptionError(f"corruption {name!r} is not part of protocol {protocol!r} (it is in "
                              f"{', '.join(homes)}); {protocol} has {own}")


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
    if protocol in C_BAR_PROTOCOLS and images.shape[-2] != images.shape[-1]:
        raise CorruptionError(
            f"protocol {protocol!r} is defined on square images (its generator's im_size), got "
            f"{tuple(images.shape[-2:])}; center-crop to a square first"
        )


def is_severity(value: object) -> bool:
    """An integer from 1 to 5 (not a bool, not a float)."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 5


def severity_hint(protocol: str) -> str:
    """What the levels of a C-bar protocol stand for, for error messages."""
    if protocol not in C_BAR_PROTOCOLS:
        return ""
    return (f" (levels 1-5 of {protocol} are its generator's severity values per corruption, e.g. "
            f"{', '.join(f'{v:g}' for v in next(iter(PARAMETERS[protocol].values())))})")


def check_options(name: str, severity: int, protocol: str, backend: str) -> None:
    check_name_in_protocol(name, protocol)
    if not is_severity(severity):
        raise CorruptionError(f"severity must be an integer from 1 to 5, got {severity!r}{severity_hint(protocol)}")
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
    # the released files hold np.uint8 of the output: .npy arrays, or saved as JPEG q85
    stored = protocol in UINT8_PROTOCOLS or protocol in JPEG_PROTOCOLS
    out = _corrupt_unsaved(images, name, severity, protocol, backend, generator, check_input,
                           ops.truncate_to_uint8_levels if stored else None)
    if protocol in JPEG_PROTOCOLS:
        out = ops.jpeg_round_trip(out, IMAGENET_C_JPEG_QUALITY)
    return out.to(images.dtype)


def severity_folder(protocol: str, name: str, severity: int) -> str:
    """The severity folder of the released layout: the level (1-5), or for the C-bar protocols
    the generator's severity value with two decimals (ImageNet-C-Bar's caustic_refraction/2.35)."""
    if protocol in C_BAR_PROTOCOLS:
        return f"{PARAMETERS[protocol][name][severity - 1]:.2f}"
    return str(severity)


def corrupt_to_uint8(
    images: Tensor, name: str, severity: int, *, protocol: str = "imagenet-c", backend: str = "native",
    generator: Randomness = None,
    check_input: bool = True,
) -> Tensor:
    """The corrupted batch as the generators store it before writing a file: np.uint8(255·x).

    Writing these as JPEG q85 (imagenet-c, imagenet-c-bar) or PNG gives the released file formats;
    ``corrupt`` applies the same storage step in memory.
    """
    return _corrupt_unsaved(images, name, severity, protocol, backend, generator, check_input, ops.truncate_to_uint8)


def _corrupt_unsaved(
    images: Tensor, name: str, severity: int, protocol: str, backend: str, generator: Randomness,
    check_input: bool, finish: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """The corrupted batch, passed through ``finish`` (the 8-bit step of the storage); the C-bar
    corruptions apply it to each chunk of images they render on the CPU."""
    finish = finish or (lambda out: out)
    check_options(name, severity, protocol, backend)
    check_images(images, protocol, values=check_input)
    if images.shape[0] == 0:
        return finish(images.clone())
    if backend == "reference":
        from .reference import reference_corrupt

        return finish(reference_corrupt(images, name, severity, generator))
    work = images.to(torch.float32) if images.dtype in (torch.float16, torch.bfloat16) else images
    draws = Draws(images.shape[0], images.device, generator)
    function, value = _FUNCTIONS[name], PARAMETERS[protocol][name][severity - 1]
    if isinstance(function, CBarCorruption):
        return function.apply(work, value, draws, finish)
    return finish(function(work, value, draws, protocol))
