"""Native corruptions against the imagecorruptions package (the reference backend) on real photos."""

from __future__ import annotations

import pytest
import torch

from robustbench_gcp.corruptions import corrupt

pytest.importorskip("imagecorruptions", reason="the reference backend needs imagecorruptions-imaug")

DETERMINISTIC = ["brightness", "contrast", "saturate", "pixelate", "gaussian_blur", "defocus_blur", "zoom_blur"]
# name -> repeats of the 20 photos (more draws where one draw varies a lot: frost picks one of
# six textures, fog one plasma map)
RANDOM = {
    "gaussian_noise": 1, "shot_noise": 1, "impulse_noise": 1, "speckle_noise": 1, "glass_blur": 1,
    "motion_blur": 2, "snow": 2, "fog": 10, "frost": 30, "elastic_transform": 1, "spatter": 3,
}


def psnr_per_image(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mse = ((a.double() - b.double()) ** 2).flatten(1).mean(1).clamp_min(1e-12)
    return 10 * torch.log10(1 / mse)


def _both(images, name, severity, seed=0):
    native = corrupt(images, name, severity, protocol="imagecorruptions", generator=torch.Generator().manual_seed(seed))
    reference = corrupt(images, name, severity, protocol="imagecorruptions", backend="reference",
                        generator=torch.Generator().manual_seed(seed))
    return native, reference


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_corruptions_match_the_package(name, imagenet_photos):
    images = imagenet_photos[:8]
    for severity in range(1, 6):
        native, reference = _both(images, name, severity)
        assert psnr_per_image(native, reference).min() >= 40.0, (name, severity)


def test_jpeg_matches_the_package(imagenet_photos):
    for severity in range(1, 6):
        native, reference = _both(imagenet_photos[:8], "jpeg_compression", severity)
        assert psnr_per_image(native, reference).min() >= 35.0


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.slow) if RANDOM[name] >= 10 else name  # 200+ draws: the slow env
    for name in sorted(RANDOM)
])
def test_random_corruptions_agree_in_distribution(name, imagenet_photos):
    images = imagenet_photos[:20].repeat(RANDOM[name], 1, 1, 1)
    for severity in range(1, 6):
        native, reference = _both(images, name, severity)
        ours = psnr_per_image(native, images).mean()
        theirs = psnr_per_image(reference, images).mean()
        assert abs(ours - theirs) <= 0.5, f"{name} severity {severity}: {ours:.2f} vs {theirs:.2f} dB"


def test_reference_backend_is_seeded(imagenet_photos):
    images = imagenet_photos[:3]
    for name in ("glass_blur", "impulse_noise", "frost"):
        first = corrupt(images, name, 2, protocol="imagecorruptions", backend="reference",
                        generator=torch.Generator().manual_seed(5))
        again = corrupt(images, name, 2, protocol="imagecorruptions", backend="reference",
                        generator=torch.Generator().manual_seed(5))
        assert torch.equal(first, again)


def test_non_monotone_severities_are_the_reference_s_own(imagenet_photos):
    images = imagenet_photos[:20]
    for name in ("glass_blur", "saturate"):
        quality = [float(psnr_per_image(_both(images, name, s)[1], images).mean()) for s in (1, 2, 3)]
        assert quality[1] > quality[0] if name == "glass_blur" else quality[2] > quality[1], (name, quality)
