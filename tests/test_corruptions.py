"""The native corruption engine on real photos: validity, determinism, severity, bad input."""

from __future__ import annotations

import re

import pytest
import torch

from robustbench_gcp.corruptions import PROTOCOLS, CorruptionError, corrupt, names
from robustbench_gcp.rng import image_streams


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over images of the PSNR (dB) between two batches in [0, 1]."""
    mse = ((a.double() - b.double()) ** 2).flatten(1).mean(1).clamp_min(1e-12)
    return float((10 * torch.log10(1 / mse)).mean())


# Where PSNR is not monotone in severity because of the protocol's own parameters (the
# reference behaves the same; test_corruption_fidelity checks that for imagecorruptions).
NOT_MONOTONE = {
    "glass_blur": "severity 2 blurs with a wider sigma but shuffles once instead of twice",
    "saturate": "severities 1-2 desaturate, 3-5 oversaturate",
    "frost": "severity 4 keeps more of the image than 3 with the same frost weight",
    "elastic_transform": "the generators' PSNR is dominated by a random affine shift that shrinks with severity",
    "motion_blur": "CIFAR-10-C severities 3 and 4 differ by one kernel tap at the same sigma",
    "spatter": "CIFAR-10-C severity 3 (water) and 4 (mud) damage about equally",
}


def _batch(protocol: str, imagenet_photos, cifar_photos) -> torch.Tensor:
    return cifar_photos[:16] if protocol == "cifar10-c" else imagenet_photos[:6]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("name", names("all"))
def test_every_corruption_runs_valid_and_deterministic(protocol, name, imagenet_photos, cifar_photos):
    images = _batch(protocol, imagenet_photos, cifar_photos)
    quality = []
    for severity in range(1, 6):
        out = corrupt(images, name, severity, protocol=protocol, generator=torch.Generator().manual_seed(7))
        assert out.shape == images.shape and out.dtype == images.dtype and out.device == images.device
        assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
        again = corrupt(images, name, severity, protocol=protocol, generator=torch.Generator().manual_seed(7))
        assert torch.equal(out, again), "same seed, same device: bit-identical"
        quality.append(psnr(out, images))
    falling = all(a > b for a, b in zip(quality, quality[1:]))
    if name in NOT_MONOTONE:
        if not (protocol != "imagecorruptions" and name == "elastic_transform"):
            assert quality[4] < quality[0], quality
    else:
        assert falling, f"PSNR by severity {quality}"
    if protocol == "cifar10-c":  # the released arrays hold 8-bit levels
        assert torch.equal(out * 255, (out * 255).round())


def test_randomness_only_from_the_generator(imagenet_photos):
    images = imagenet_photos[:2]
    first = corrupt(images, "gaussian_noise", 3, generator=torch.Generator().manual_seed(1))
    other = corrupt(images, "gaussian_noise", 3, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(123)  # the global RNG plays no part
    again = corrupt(images, "gaussian_noise", 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(first, again) and not torch.equal(first, other)


@pytest.mark.parametrize("name", ["shot_noise", "glass_blur", "motion_blur", "frost", "fog", "snow", "spatter",
                                  "elastic_transform"])
def test_image_streams_make_results_independent_of_the_batch(name, imagenet_photos):
    images = imagenet_photos[:4]
    streams = image_streams(0, [10, 11, 12, 13], name, 3)
    whole = corrupt(images, name, 3, protocol="imagecorruptions", generator=streams)
    half = corrupt(images[2:], name, 3, protocol="imagecorruptions", generator=streams[2:])
    torch.testing.assert_close(whole[2:], half, rtol=0, atol=1e-6)
    other = corrupt(images[2:], name, 3, protocol="imagecorruptions", generator=image_streams(1, [12, 13], name, 3))
    assert not torch.equal(other, half)  # another run seed, other draws


def test_dtypes_are_preserved(imagenet_photos):
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        out = corrupt(imagenet_photos[:2].to(dtype), "contrast", 2, protocol="imagecorruptions")
        assert out.dtype == dtype


def test_names_in_hendrycks_order():
    assert names()[:4] == ["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur"]
    assert len(names("common")) == 15 and len(names("all")) == 19
    assert names("extra") == ["speckle_noise", "gaussian_blur", "spatter", "saturate"]
    assert names("weather") == ["snow", "frost", "fog", "brightness"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(name="gausian_noise"), "unknown corruption 'gausian_noise' (did you mean gaussian_noise"),
        (dict(severity=0), "severity must be an integer from 1 to 5"),
        (dict(severity=6), "severity must be an integer from 1 to 5"),
        (dict(protocol="imagenet-p"), "unknown protocol"),
        (dict(backend="reference", protocol="imagenet-c"), "serves protocol 'imagecorruptions' only"),
        (dict(images=torch.zeros(1, 3, 224, 224, dtype=torch.uint8)), "convert uint8 with images.float() / 255"),
        (dict(images=torch.full((1, 3, 224, 224), 2.0)), "in [0, 1]"),
        (dict(images=torch.rand(1, 3, 64, 64)), "needs images of at least 224×224"),
        (dict(images=torch.rand(1, 3, 16, 16), protocol="cifar10-c"), "needs images of at least 32×32"),
        (dict(images=torch.rand(3, 224, 224)), "shape (N, 3, H, W)"),
    ],
)
def test_bad_input_gets_one_clear_error(kwargs, message):
    args = dict(images=torch.rand(1, 3, 224, 224), name="gaussian_noise", severity=1, protocol="imagenet-c")
    args.update(kwargs)
    with pytest.raises(CorruptionError, match=re.escape(message)):
        corrupt(args.pop("images"), args.pop("name"), args.pop("severity"), **args)
