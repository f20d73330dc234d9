"""Native corruptions against the imagecorruptions package on real photos, from the package's
outcomes recorded in tests/baselines/references/ (tests/references.py): sampled pixels of the
deterministic corruptions, and every corruption's quality (PSNR to the clean photo) per severity."""

from __future__ import annotations

import pytest
import torch
from references import (
    DETERMINISTIC,
    DETERMINISTIC_IMAGES,
    RANDOM,
    pixel_positions,
    psnr_per_image,
    random_inputs,
    recorded,
    recorded_pixels,
)

from robustbench_gcp.corruptions import corrupt


def native(images, name, severity, seed=0):
    return corrupt(images, name, severity, protocol="imagecorruptions", generator=torch.Generator().manual_seed(seed))


def sampled_psnr(images, name):
    """Per severity, the native output's PSNR to the package's recorded one at the sampled pixels."""
    record = recorded(f"imagecorruptions-{name}")["sampled_pixels"]
    positions = pixel_positions(images)
    return {severity: psnr_per_image(native(images, name, severity).flatten(1)[:, positions],
                                     recorded_pixels(record[str(severity)], len(images)))
            for severity in range(1, 6)}


@pytest.mark.parametrize("name", [n for n in DETERMINISTIC if n != "jpeg_compression"])
def test_deterministic_corruptions_match_the_package(name, imagenet_photos):
    for severity, psnr in sampled_psnr(imagenet_photos[:DETERMINISTIC_IMAGES], name).items():
        assert psnr.min() >= 40.0, (name, severity)


def test_jpeg_matches_the_package(imagenet_photos):
    for psnr in sampled_psnr(imagenet_photos[:DETERMINISTIC_IMAGES], "jpeg_compression").values():
        assert psnr.min() >= 35.0


def test_a_perturbed_native_corruption_fails_the_recorded_reference(imagenet_photos, monkeypatch):
    """The records catch drift: brightness shifted by a quarter of a severity step no longer
    matches the package's pixels."""
    from robustbench_gcp.corruptions.params import PARAMETERS

    shifts = PARAMETERS["imagecorruptions"]["brightness"]
    monkeypatch.setitem(PARAMETERS["imagecorruptions"], "brightness", tuple(s + 0.025 for s in shifts))
    psnr = sampled_psnr(imagenet_photos[:DETERMINISTIC_IMAGES], "brightness")
    assert min(float(p.min()) for p in psnr.values()) < 40.0


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.slow) if RANDOM[name] >= 10 else name  # 200+ draws: the slow env
    for name in sorted(RANDOM)
])
def test_random_corruptions_agree_in_distribution(name, imagenet_photos):
    images = random_inputs(name)
    theirs = recorded(f"imagecorruptions-{name}")["mean_psnr_to_clean"]
    for severity in range(1, 6):
        ours = psnr_per_image(native(images, name, severity), images).mean()
        assert abs(ours - theirs[str(severity)]) <= 0.5, f"{name} severity {severity}: {ours:.2f} vs " \
                                                         f"{theirs[str(severity)]:.2f} dB"


def test_reference_backend_is_seeded(imagenet_photos):
    pytest.importorskip("imagecorruptions", reason="the reference backend needs imagecorruptions-imaug")
    images = imagenet_photos[:3]
    for name in ("glass_blur", "impulse_noise", "frost"):
        first = corrupt(images, name, 2, protocol="imagecorruptions", backend="reference",
                        generator=torch.Generator().manual_seed(5))
        again = corrupt(images, name, 2, protocol="imagecorruptions", backend="reference",
                        generator=torch.Generator().manual_seed(5))
        assert torch.equal(first, again)


def test_non_monotone_severities_are_the_reference_s_own():
    glass = recorded("imagecorruptions-glass_blur")["mean_psnr_to_clean"]
    saturate = recorded("imagecorruptions-saturate")["psnr_to_clean"]
    assert glass["2"] > glass["1"]
    assert sum(saturate["3"]) > sum(saturate["2"])  # the mean over the same 20 photos
