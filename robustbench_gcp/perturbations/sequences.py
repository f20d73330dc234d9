"""The perturbation sequences as batched tensor code: each generator turns a batch of clean
images (N, 3, canvas, canvas) in [0, 1] into its frames, one (N, 3, size, size) uint8 tensor per
frame, stored as the generators stored them (8-bit truncation after NumPy/PIL float steps,
rounding after OpenCV/ImageMagick/PIL resampling). Frames loop in Python; every frame is one
batched operation on all images. The pixel operations are the corruption engine's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor
from torchvision.transforms import InterpolationMode

from ..corruptions import ops
from ..corruptions.digital import brightness as shift_brightness
from ..corruptions.spatter import WATER, water_shading
from ..rng import Draws
from .params import NOISE_LEVELS, ProtocolSpec

FrameDraws = Callable[[int], Draws]  # the draws of frame i
Frames = Iterator[Tensor]


def centre(x: Tensor, size: int) -> Tensor:
    return TF.center_crop(x, [size, size])


def _window(x: Tensor, half: float, size: int) -> Tensor:
    """The centre of ``x`` (at least the frame's ``size``) that holds every source pixel of a warp
    whose frame pixels come from at most ``half`` px from the centre, bilinear neighbours
    included: warping it instead of the whole canvas gives the same frame for less work."""
    side = min(x.shape[-1], max(size, 2 * math.ceil(half + 2)))
    return centre(x, side)


def _affine(x: Tensor, spec: ProtocolSpec, *, angle: float = 0.0, scale: float = 1.0, shear: float = 0.0) -> Tensor:
    """torchvision's bilinear affine about the image centre (angles clockwise, black outside), then the crop."""
    r, a, s = spec.size / 2, math.radians(angle), math.radians(shear)
    reach = r * (abs(math.cos(a)) + abs(math.sin(a))) * (1 + abs(math.tan(s))) / scale  # a bound on |source - centre|
    out = TF.affine(_window(x, reach, spec.size), angle=angle, translate=[0, 0], scale=scale, shear=[shear, 0.0],
                    interpolation=InterpolationMode.BILINEAR, fill=0.0)
    return centre(out, spec.size)


def _tilt_reach(degrees: float, side: int, spec: ProtocolSpec) -> float:
    """How far from the centre tilt's frame pixels take their source: the frame's corners mapped
    back (a homography maps the frame's square to a quadrilateral)."""
    a, b, c, d, e, f, g, h = tilt_coefficients(degrees, side, spec.focal)
    low, high = (side - spec.size) / 2, (side + spec.size) / 2
    reach = 0.0
    for u in (low, high):
        for v in (low, high):
            w = g * u + h * v + 1
            reach = max(reach, abs((a * u + b * v + c) / w - side / 2), abs((d * u + e * v + f) / w - side / 2))
    return reach


def tilt_coefficients(degrees: float, side: int, focal: float) -> list[float]:
    """The generator's tilt homography (rotation by the same angle about the x and y axes of a
    plane at distance ``focal``, projected back), as torchvision's output→input coefficients.

    OpenCV places pixel centres at integer coordinates, torchvision at integer + 0.5: the
    inverse homography is conjugated by that half-pixel shift."""
    t = math.radians(degrees)
    c = side / 2
    to_plane = np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1], [0, 0, 1]], dtype=np.float64)
    rx = np.array([[1, 0, 0, 0], [0, math.cos(t), -math.sin(t), 0], [0, math.sin(t), math.cos(t), 0], [0, 0, 0, 1]])
    ry = np.array([[math.cos(t), 0, -math.sin(t), 0], [0, 1, 0, 0], [math.sin(t), 0, math.cos(t), 0], [0, 0, 0, 1]])
    away = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, focal], [0, 0, 0, 1]], dtype=np.float64)
    project = np.array([[focal, 0, c, 0], [0, focal, c, 0], [0, 0, 1, 0]], dtype=np.float64)
    half = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    inverse = half @ np.linalg.inv(project @ away @ rx @ ry @ to_plane) @ np.linalg.inv(half)
    return (inverse / inverse[2, 2]).reshape(-1)[:8].tolist()


def gaussian_noise(x: Tensor, spec: ProtocolSpec, draws: FrameDraws, level: int, protocol: str) -> Frames:
    std = NOISE_LEVELS[protocol]["gaussian_noise"][level - 1]
    x = centre(x, spec.size)
    yield ops.truncate_to_uint8(x)
    for i in range(1, spec.length("gaussian_noise")):
        yield ops.truncate_to_uint8(x + draws(i).normal(tuple(x.shape[1:]), std=std, dtype=x.dtype))


def shot_noise(x: Tensor, spec: ProtocolSpec, draws: FrameDraws, level: int, protocol: str) -> Frames:
    rate = NOISE_LEVELS[protocol]["shot_noise"][level - 1]
    x = centre(x, spec.size)
    yield ops.truncate_to_uint8(x)
    for i in range(1, spec.length("shot_noise")):
        yield ops.truncate_to_uint8(draws(i).poisson(x * rate) / rate)


def speckle_noise(x: Tensor, spec: ProtocolSpec, draws: FrameDraws, level: int, protocol: str) -> Frames:
    scale = NOISE_LEVELS[protocol]["speckle_noise"][level - 1]
    x = centre(x, spec.size)
    yield ops.truncate_to_uint8(x)
    for i in range(1, spec.length("speckle_noise")):
        yield ops.truncate_to_uint8(x + x * draws(i).normal(tuple(x.shape[1:]), std=scale, dtype=x.dtype))


def motion_blur(x: Tensor, spec: ProtocolSpec, draws: FrameDraws, level: int, protocol: str) -> Frames:
    radius, sigma, first, step = spec.motion_blur
    x = centre(x, spec.size)
    for i in range(spec.length("motion_blur")):
        angles = torch.full((x.shape[0],), first + step * i, dtype=torch.float64)
        yield ops.to_uint8(ops.motion_blur(x, radius, sigma, angles))


def zoom_blur(x: Tensor, spec: ProtocolSpec, draws: FrameDraws, level: int, protocol: str) -> Frames:
    """Frame i: the running mean of the crop zoomed by 1, 1 + step, …, 1 + i·step."""
    total = centre(x, spec.size).clone()
    yield ops.truncate_to_uint8(total)
    for i in range(1, spec.length("zoom_blur")):
        total += ops.to_uint8(_affine(x, spec, scale=1 + spec.zoom_step * i)).to(x.dtype) / 255
        yield ops.truncate_to_uint8(total / (i + 1))


def snow(x: Tensor, spec: ProtocolSpec, draws: FrameDraws, level: int, protocol: str) -> Frames:
    """One snow layer per video, blurred along an angle that turns by 4° per frame."""
    s = spec.snow
    x = centre(x, spec.size)
    layer = draws(0).normal((1, spec.size, spec.size), mean=s.loc, std=s.scale, dtype=x.dtype)
    layer = ops.clipped_zoom(layer, s.zoom, trim="center")
    layer = ops.truncate_to_uint8_levels(layer.masked_fill(layer < s.threshold, 0).clamp(0, 1))
    base = s.blend * x + (1 - s.blend) * torch.maximum(x, ops.gray(x) * 1.5 + 0.5)
    for i in range(spec.length("snow")):
        angles = torch.full((x.shape[0],), i * 4.0 - 150, dtype=torch.float64)
        flakes = ops.to_uint8(ops.motion_blur(layer, s.radius, s.sigma, angles)).to(x.dtype) / 255
        yield ops.truncate_to_uint8(base + flakes + flakes.flip(-1, -2))


def brightness(x: Tensor, spec: ProtocolSpec, draws: FrameDraws, level: int, protocol: str) -> Frames:
    x = centre(x, spec.size)
    for i in range(spec.length("brightness")):
        yield ops.truncate_to_uint8(shift_brightness(x, (i - 15) * spec.brightness_step, None, protocol))


def shift_right(x: Tensor, pixels: int) -> Tensor:
    """An integer horizontal shift with black fill: what the affine with nearest sampling does to
    an integer translation, as a copy."""
    out = torch.zeros_like(x)
    width = x.shape[-1]
    if abs(pixels) < width:
        out[..., max(pixels, 0) : width + min(pixels, 0)] = x[..., max(-pixels, 0) : width - max(pixels, 0)]
    return out


def translate(x: Tensor, spec: ProtocolSpec, draws: FrameDraws, level: int, protocol: str) -> Frames:
    for i in range(spec.length("translate")):
        pixels = spec.translate_first + i
        window = _window(x, spec.size / 2 + abs(pixels), spec.size)
        yield ops.truncate_to_uint8(centre(shift_right(window, pixels), spec.size))


def rotate(x: Tensor, spec: ProtocolSpec, draws: FrameDraws, level: int, protocol: str) -> Frames:
    for i in range(spec.length("rotate")):
        yield ops.to_uint8(_affine(x, spec, angle=float(i - 15)))


def tilt(x: Tensor, spec: ProtocolSpec, draws: FrameDraws, level: int, protocol: str) -> Frames:
    for i in range(spec.length("tilt")):
        window = _window(x, _tilt_reach(spec.tilt_step * (i - 15), x.shape[-1], spec), spec.size)
        coefficients = tilt_coefficients(spec.tilt_step * (i - 15), window.shape[-1], spec.focal)
        out = TF.perspective(window, None, None, interpolation=InterpolationMode.BILINEAR, fill=0.0,
                             coefficients=coefficients)
        yield ops.to_uint8(centre(out, spec.size))


def scale(x: Tensor, spec: ProtocolSpec, draws: FrameDraws, level: int, protocol: str) -> Frames:
    first, step = spec.scale
    for i in range(spec.length("scale")):
        yield ops.to_uint8(_affine(x, spec, scale=first + step * i))


def gaussian_blur(x: Tensor, spec: ProtocolSpec, draws: FrameDraws, level: int, protocol: str) -> Frames:
    first, step, truncate = spec.gaussian_blur
    x = centre(x, spec.size)
    for i in range(spec.length("gaussian_blur")):
        yield ops.truncate_to_uint8(ops.gaussian_blur(x, first + step * i, mode="nearest", truncate=truncate))


def flow_down(liquid: Tensor, kernel: tuple[float, ...]) -> Tensor:
    """``np.convolve(column, kernel, mode='same')`` down every column (zeros past the edges)."""
    h = liquid.shape[-2]
    shift = (len(kernel) - 1) // 2
    padded = torch.nn.functional.pad(liquid, (0, 0, len(kernel), len(kernel)))
    out = torch.zeros_like(liquid)
    for m, weight in enumerate(kernel):  # out[i] += k[m] · v[i + shift − m]
        start = len(kernel) + shift - m
        out += weight * padded[..., start : start + h, :]
    return out


def spatter(x: Tensor, spec: ProtocolSpec, draws: FrameDraws, level: int, protocol: str) -> Frames:
    """Water drops whose liquid layer flows down a little after every frame."""
    s = spec.spatter
    x = centre(x, spec.size)
    liquid = draws(0).normal((1, spec.size, spec.size), mean=s.loc, std=s.scale, dtype=torch.float64)
    liquid = ops.gaussian_blur(liquid, float(s.sigma))
    liquid = liquid.masked_fill(liquid < s.threshold, 0)
    water = x.new_tensor(WATER).view(1, 3, 1, 1)
    for _ in range(spec.length("spatter")):
        shading = water_shading(liquid).to(x.dtype) * s.strength
        yield ops.truncate_to_uint8(x + shading * water)
        liquid = flow_down(liquid, s.flow)


def shear(x: Tensor, spec: ProtocolSpec, draws: FrameDraws, level: int, protocol: str) -> Frames:
    for i in range(spec.length("shear")):
        yield ops.to_uint8(_affine(x, spec, shear=float(i - 15)))


GENERATORS = {
    "gaussian_noise": gaussian_noise, "shot_noise": shot_noise, "motion_blur": motion_blur, "zoom_blur": zoom_blur,
    "snow": snow, "brightness": brightness, "translate": translate, "rotate": rotate, "tilt": tilt,
    "scale": scale, "speckle_noise": speckle_noise, "gaussian_blur": gaussian_blur, "spatter": spatter,
    "shear": shear,
}
