"""The batched integer JPEG round trip is libjpeg's, bit for bit: against torchvision's libjpeg
and against PIL (the released files' encoder), on real photos and noise, at several qualities
and at sizes that are and are not whole 16-pixel MCUs."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import decode_jpeg, encode_jpeg

from robustbench_gcp.corruptions.jpeg import jpeg_round_trip_exact, quant_table
from robustbench_gcp.corruptions.ops import quiet_torchvision_codecs


def libjpeg(images: torch.Tensor, quality: int) -> torch.Tensor:
    with quiet_torchvision_codecs():
        return torch.stack([decode_jpeg(encode_jpeg(image, quality=quality)) for image in images])


def pil(images: torch.Tensor, quality: int) -> torch.Tensor:
    out = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=quality)
        out.append(torch.from_numpy(np.array(Image.open(buffer).convert("RGB"))).permute(2, 0, 1))
    return torch.stack(out)


@pytest.fixture(scope="module")
def photos(imagenet_photos) -> torch.Tensor:
    return (imagenet_photos * 255).round().to(torch.uint8)


@pytest.mark.parametrize("quality", [85, 95, 50, 30, 10, 1])
def test_equals_libjpeg_and_pil_on_photos(photos, quality):
    expected = libjpeg(photos, quality)
    assert torch.equal(jpeg_round_trip_exact(photos, quality), expected)
    assert torch.equal(pil(photos[:6], quality), expected[:6])


@pytest.mark.parametrize("size", [(32, 32), (37, 50), (17, 9), (224, 224)])
def test_equals_libjpeg_at_any_size_and_on_noise(photos, size):
    generator = torch.Generator().manual_seed(sum(size))
    noise = torch.randint(0, 256, (3, 3, *size), generator=generator, dtype=torch.uint8)
    crops = photos[:3, :, : size[0], : size[1]]
    for images in (noise, crops):
        assert torch.equal(jpeg_round_trip_exact(images, 85), libjpeg(images, 85))


def test_quality_tables_follow_libjpeg_scaling():
    assert quant_table((16, 11, 200), 85) == [5, 3, 60]
    assert quant_table((16, 11, 200), 50) == [16, 11, 200]
    assert quant_table((16, 11, 200), 10) == [80, 55, 255]  # force_baseline caps at 255


def test_equals_libjpeg_at_every_quality(photos):
    """Each quality scales the tables differently (rounding, the floor of 1, the cap of 255)."""
    crops = photos[:2, :, 5:46, 3:60]  # 41 × 57: neither side a whole MCU
    for quality in range(1, 96):
        assert torch.equal(jpeg_round_trip_exact(crops, quality), libjpeg(crops, quality)), quality
