"""Severity parameters (severity 1 first) of the five protocols.

``imagecorruptions``: what the imagecorruptions package computes (any image size).
``imagenet-c``: the generator of the released ImageNet-C (224 px).
``cifar10-c``: the generator of the released CIFAR-10-C (32 px).
``imagenet-c-bar`` / ``cifar10-c-bar``: the generators of ImageNet-C-bar and CIFAR-10-C-bar
(Mintun et al. 2021, facebookresearch/augmentation-corruption, ``imagenet_c_bar/*_c_bar.csv``):
each level is the generator's own severity value on its 0–10 scale.
"""

from __future__ import annotations

import numpy as np

from ..choices import C_BAR_PROTOCOLS, CORRUPTION_PROTOCOLS, IMAGENET_C_PROTOCOLS

PROTOCOLS = IMAGENET_C_PROTOCOLS  # the protocols of the 19 ImageNet-C corruptions
ALL_PROTOCOLS = CORRUPTION_PROTOCOLS
__all__ = ["ALL_PROTOCOLS", "C_BAR_PROTOCOLS", "MIN_SIZE", "PARAMETERS", "PROTOCOLS"]


def _zoom_factors(stop: float, step: float) -> tuple[float, ...]:
    """The reference's ``np.arange(1, stop, step)``, float quirks included (1.11 is in 1 → 1.11)."""
    return tuple(np.arange(1, stop, step).tolist())


_IMAGENET = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "shot_noise": (60, 25, 12, 5, 3),
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
    "speckle_noise": (0.15, 0.2, 0.35, 0.45, 0.6),
    "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
    "glass_blur": ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
    "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
    "zoom_blur": (_zoom_factors(1.11, 0.01), _zoom_factors(1.16, 0.01), _zoom_factors(1.21, 0.02),
                  _zoom_factors(1.26, 0.02), _zoom_factors(1.31, 0.03)),
    "gaussian_blur": (1, 2, 3, 4, 6),
    "snow": ((0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7), (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
             (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)),
    "frost": ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),
    "fog": ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)),
    "spatter": ((0.65, 0.3, 4, 0.69, 0.6, 0), (0.65, 0.3, 3, 0.68, 0.6, 0), (0.65, 0.3, 2, 0.68, 0.5, 0),
                (0.65, 0.3, 1, 0.65, 1.5, 1), (0.67, 0.4, 1, 0.65, 1.5, 1)),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "saturate": ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)),
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
    "jpeg_compression": (25, 18, 15, 10, 7),
}

# imagecorruptions re-parameterised elastic_transform: alpha; sigma = 1 % and the maximal
# displacement 0.5 % of the image height are applied in the function.
_IMAGECORRUPTIONS_ELASTIC = (250 * 0.05, 250 * 0.065, 250 * 0.085, 250 * 0.1, 250 * 0.12)
# The ImageNet-C generator's (alpha, sigma, affine) in pixels; its source scales by 244 for 224-px
# images ("244 should have been 224"), kept as released.
_IMAGENET_C_ELASTIC = tuple(
    (244 * a, 244 * s, 244 * f)
    for a, s, f in ((2, 0.7, 0.1), (2, 0.08, 0.2), (0.05, 0.01, 0.02), (0.07, 0.01, 0.02), (0.12, 0.01, 0.02))
)

_CIFAR = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "shot_noise": (500, 250, 100, 75, 50),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
    "zoom_blur": tuple(_zoom_factors(stop, 0.01) for stop in (1.06, 1.11, 1.16, 1.21, 1.26)),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1),
    "snow": ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
             (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)),
    "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
    "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
    "spatter": ((0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0), (0.65, 0.3, 1, 0.69, 0.5, 0),
                (0.65, 0.1, 0.7, 0.69, 0.6, 1), (0.65, 0.1, 0.5, 0.68, 0.6, 1)),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "saturate": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
    "jpeg_compression": (80, 65, 58, 50, 40),
    "elastic_transform": tuple(
        (32 * a, 32 * s, 32 * f)
        for a, s, f in ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))
    ),
}

# The generators' severity values, in the order of their tables (imagenet_c_bar.csv, cifar10_c_bar.csv).
_IMAGENET_C_BAR = {
    "caustic_refraction": (2.35, 3.2, 4.9, 6.6, 9.15),
    "inverse_sparkles": (1.0, 2.0, 4.0, 9.0, 10.0),
    "sparkles": (1.0, 2.0, 3.0, 5.0, 6.0),
    "perlin_noise": (4.6, 5.2, 5.8, 7.6, 8.8),
    "blue_noise_sample": (0.8, 1.6, 2.4, 4.0, 5.6),
    "plasma_noise": (4.75, 7.0, 8.5, 9.25, 10.0),
    "checkerboard_cutout": (2.0, 3.0, 4.0, 5.0, 6.0),
    "cocentric_sine_waves": (3.0, 5.0, 8.0, 9.0, 10.0),
    "single_frequency_greyscale": (1.0, 1.5, 2.0, 4.5, 5.0),
    "brownish_noise": (1.0, 2.0, 3.0, 4.0, 5.0),
}
_CIFAR10_C_BAR = {
    "blue_noise_sample": (0.7, 1.4, 2.1, 3.5, 4.2),
    "checkerboard_cutout": (1.0, 2.0, 3.0, 4.0, 5.0),
    "inverse_sparkles": (1.0, 1.5, 2.5, 4.5, 5.0),
    "pinch_and_twirl": (5.5, 6.0, 6.5, 8.5, 10.0),
    "ripple": (5.5, 6.0, 6.5, 7.5, 8.0),
    "brownish_noise": (2.5, 4.0, 5.5, 6.5, 7.0),
    "circular_motion_blur": (2.8, 3.6, 4.4, 5.2, 6.0),
    "lines": (0.5, 1.0, 1.5, 2.0, 2.5),
    "sparkles": (0.7, 3.5, 5.6, 6.3, 7.0),
    "transverse_chromatic_abberation": (1.0, 2.0, 5.0, 9.0, 10.0),
}

PARAMETERS: dict[str, dict[str, tuple]] = {
    "imagecorruptions": {**_IMAGENET, "elastic_transform": _IMAGECORRUPTIONS_ELASTIC},
    "imagenet-c": {**_IMAGENET, "elastic_transform": _IMAGENET_C_ELASTIC},
    "cifar10-c": _CIFAR,
    "imagenet-c-bar": _IMAGENET_C_BAR,
    "cifar10-c-bar": _CIFAR10_C_BAR,
}

# Smallest image side each protocol is defined for.
MIN_SIZE = {"imagecorruptions": 32, "imagenet-c": 224, "cifar10-c": 32, "imagenet-c-bar": 224, "cifar10-c-bar": 32}
