"""Weather corruptions: snow, frost, fog (spatter lives in its own module)."""

from __future__ import annotations

import functools
import importlib.resources

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..rng import Draws
from . import ops

FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")


def snow(x: Tensor, params: tuple, draws: Draws, protocol: str) -> Tensor:
    loc, scale, zoom, threshold, radius, sigma, blend = params
    n, _, h, w = x.shape
    layer = draws.normal((1, h, w), mean=loc, std=scale, dtype=x.dtype)
    reference_package = protocol == "imagecorruptions"
    layer = ops.clipped_zoom(layer, zoom, trim="none" if reference_package else "center")
    layer = layer.masked_fill(layer < threshold, 0).clamp(0, 1)
    if not reference_package:  # the generators store the layer as an 8-bit image first
        layer = ops.truncate_to_uint8_levels(layer)
    angles = draws.uniform((), -135.0, -45.0, dtype=torch.float64)
    layer = ops.motion_blur(layer, radius, sigma, angles)
    layer = (layer * 255).round() / 255
    layer = layer[:, :, :h, :w]
    x = blend * x + (1 - blend) * torch.maximum(x, ops.gray(x) * 1.5 + 0.5)
    return (x + layer + layer.flip(-1, -2)).clamp(0, 1)


@functools.lru_cache(maxsize=None)
def frost_texture(index: int) -> Tensor:
    """One of the reference package's frost photographs as uint8 (3, H, W), alpha dropped."""
    resource = importlib.resources.files("imagecorruptions") / "frost" / FROST_FILES[index]
    try:
        with importlib.resources.as_file(resource) as path, Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
    except (ModuleNotFoundError, FileNotFoundError) as error:
        raise RuntimeError(
            "frost needs the textures of the imagecorruptions package: pip install imagecorruptions-imaug"
        ) from error
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def _resized_texture(index: int, protocol: str, height: int, width: int) -> Tensor:
    """A texture as each generator scales it, float in [0, 1] (rounded to 8-bit levels)."""
    texture = frost_texture(index).float()[None]
    th, tw = texture.shape[-2:]
    if protocol == "cifar10-c":  # cv2.resize(fx=fy=0.2), bilinear
        texture = F.interpolate(texture, scale_factor=0.2, mode="bilinear", align_corners=False)
    elif protocol == "imagecorruptions" or th < height or tw < width:
        # cv2.resize(INTER_CUBIC) by 1.1 × the factor that makes the texture cover the image
        factor = 1.1 * max(1.0, height / th, width / tw)
        size = (int(np.ceil(th * factor)), int(np.ceil(tw * factor)))
        texture = F.interpolate(texture, size=size, mode="bicubic", align_corners=False)
    return (texture.round().clamp(0, 255) / 255)[0]


@functools.lru_cache(maxsize=16)
def _texture_stack(protocol: str, height: int, width: int, device: torch.device,
                   dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """All textures a protocol draws from, zero-padded into one tensor, and their sizes, on
    ``device`` (copied there once, not per batch)."""
    count = 6 if protocol == "imagecorruptions" else 5  # the generators draw randint(5)
    textures = [_resized_texture(i, protocol, height, width) for i in range(count)]
    max_h = max(t.shape[1] for t in textures)
    max_w = max(t.shape[2] for t in textures)
    stack = torch.stack([F.pad(t, (0, max_w - t.shape[2], 0, max_h - t.shape[1])) for t in textures])
    sizes = torch.tensor([t.shape[1:] for t in textures])
    return stack.to(device, dtype), sizes.to(device)


def frost(x: Tensor, params: tuple[float, float], draws: Draws, protocol: str) -> Tensor:
    image_weight, frost_weight = params
    n, _, h, w = x.shape
    stack, sizes = _texture_stack(protocol, h, w, x.device, x.dtype)
    index = draws.randint(0, len(stack))
    # randint(0, texture side - image side) per image, with its own bound
    top = (draws.uniform((), dtype=torch.float64) * (sizes[index, 0] - h)).long()
    left = (draws.uniform((), dtype=torch.float64) * (sizes[index, 1] - w)).long()
    rows = top[:, None] + torch.arange(h, device=x.device)
    cols = left[:, None] + torch.arange(w, device=x.device)
    crops = stack[index[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    return (image_weight * x + frost_weight * crops).clamp(0, 1)


def fog(x: Tensor, params: tuple[float, float], draws: Draws, protocol: str) -> Tensor:
    scale, decay = params
    h, w = x.shape[-2:]
    mapsize = 1 << (max(h, w) - 1).bit_length()
    plasma = ops.plasma_fractal(draws, mapsize, decay)[:, None, :h, :w].to(x.dtype)
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    return ((x + scale * plasma) * peak / (peak + scale)).clamp(0, 1)
