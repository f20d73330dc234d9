"""Frame schedules of the two perturbation protocols, as the ImageNet-P and CIFAR-10-P
generators made them (frame i of T; the noise sequences have three difficulty levels).

``imagenet-p``: 224-px frames. The geometric sequences transform the whole image resized to a
256-px shorter side and crop the centre 224 px afterwards; the others work on that crop.
``cifar10-p``: 32-px frames made from the 32-px test images themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..choices import PERTURBATION_PROTOCOLS

PROTOCOLS = PERTURBATION_PROTOCOLS

# The three noise sequences: the strength per difficulty level (1, 2, 3).
NOISE_LEVELS = {
    "imagenet-p": {"gaussian_noise": (0.03, 0.05, 0.08), "shot_noise": (300, 120, 60),
                   "speckle_noise": (0.05, 0.10, 0.15)},
    "cifar10-p": {"gaussian_noise": (0.02, 0.04, 0.06), "shot_noise": (700, 400, 200),
                  "speckle_noise": (0.05, 0.07, 0.10)},
}


@dataclass(frozen=True)
class SnowSpec:
    loc: float
    scale: float
    zoom: float
    threshold: float
    radius: int
    sigma: float
    blend: float


@dataclass(frozen=True)
class SpatterSpec:
    loc: float
    scale: float
    sigma: float
    threshold: float
    flow: tuple[float, ...]  # the liquid's advection kernel, applied down the columns after each frame
    strength: float


@dataclass(frozen=True)
class ProtocolSpec:
    """One protocol's frame size, input canvas and every sequence's schedule (functions of i)."""

    size: int  # frame side
    resize: int | None  # shorter side the clean image is resized to (None: taken as it is)
    canvas: int  # side of the clean input: the resized image centre-cropped, zero-padded past its edges
    focal: float  # tilt's focal length: the diagonal of the (square) resized image
    frames: dict[str, int]
    motion_blur: tuple[int, float, float, float]  # radius, sigma, first angle, angle step (degrees)
    zoom_step: float
    snow: SnowSpec
    brightness_step: float
    translate_first: int
    tilt_step: float  # degrees per frame
    scale: tuple[float, float]  # first scale, step
    gaussian_blur: tuple[float, float, float]  # first sigma, step, truncate
    spatter: SpatterSpec

    def length(self, name: str) -> int:
        return self.frames.get(name, 31)


SPECS = {
    "imagenet-p": ProtocolSpec(
        size=224, resize=256,
        # 560 px: room for every frame's source pixels (scale 0.4 reaches 280 px from the centre)
        canvas=560, focal=256 * 2**0.5, frames={"translate": 41},
        motion_blur=(10, 3.0, -120.0, 4.0), zoom_step=0.004,
        snow=SnowSpec(0.05, 0.3, 3, 0.5, 14, 4.0, 0.85), brightness_step=0.02, translate_first=-20, tilt_step=1.0,
        scale=(0.40, 0.025), gaussian_blur=(0.25, 0.035, 6.0),
        spatter=SpatterSpec(0.65, 0.27, 3.7, 0.69, (0.05, 0.1, 0.15, 0.7), 0.6),
    ),
    "cifar10-p": ProtocolSpec(
        size=32, resize=None, canvas=32, focal=32 * 2**0.5, frames={"motion_blur": 21, "translate": 16},
        motion_blur=(6, 1.8, -180.0, 9.0), zoom_step=0.004,
        snow=SnowSpec(0.05, 0.3, 2, 0.5, 10, 2.0, 0.85), brightness_step=0.015, translate_first=-7, tilt_step=0.75,
        scale=(0.70, 0.02), gaussian_blur=(0.30, 0.015, 7.0),
        spatter=SpatterSpec(0.6, 0.265, 1.75, 0.7, (0.2, 0.8), 0.6),
    ),
}
