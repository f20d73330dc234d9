"""The ImageNet-C-bar and CIFAR-10-C-bar protocols of the corruption engine on real photos: every
corruption at every severity, the pixels of the per-image NumPy version of the published
definitions (tests/cbar_reference.py) from the same draws, per-image streams, bad input."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from cbar_reference import apply as reference_apply
from skimage.draw import line_aa

from robustbench_gcp.corruptions import C_BAR_PROTOCOLS, CorruptionError, corrupt, corrupt_to_uint8, names
from robustbench_gcp.corruptions.cbar import CORRUPTIONS
from robustbench_gcp.corruptions.cbar.occlusions import line_aa_batch
from robustbench_gcp.corruptions.ops import truncate_to_uint8
from robustbench_gcp.corruptions.params import PARAMETERS
from robustbench_gcp.rng import Draws, image_streams

CASES = [(protocol, name) for protocol in C_BAR_PROTOCOLS for name in names(protocol)]


def batch(protocol: str, imagenet_photos, cifar_photos, count: int) -> torch.Tensor:
    """Real photos at the generator's size: 224-px ImageNet photos or 32-px CIFAR-10 photos, as
    8-bit levels (what the generators read)."""
    images = imagenet_photos[:count] if protocol == "imagenet-c-bar" else cifar_photos[: 4 * count]
    return (images * 255).round() / 255


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.double() - b.double()) ** 2).flatten(1).mean(1).clamp_min(1e-12)
    return float((10 * torch.log10(1 / mse)).mean())


def test_the_protocols_hold_the_published_tables():
    assert names("imagenet-c-bar") == ["caustic_refraction", "inverse_sparkles", "sparkles", "perlin_noise",
                                       "blue_noise_sample", "plasma_noise", "checkerboard_cutout",
                                       "cocentric_sine_waves", "single_frequency_greyscale", "brownish_noise"]
    assert names("cifar10-c-bar") == ["blue_noise_sample", "checkerboard_cutout", "inverse_sparkles",
                                      "pinch_and_twirl", "ripple", "brownish_noise", "circular_motion_blur", "lines",
                                      "sparkles", "transverse_chromatic_abberation"]
    assert len(names("c-bar")) == 15 and len(names("all")) == 19  # ImageNet-C's subsets are unchanged
    assert PARAMETERS["imagenet-c-bar"]["caustic_refraction"] == (2.35, 3.2, 4.9, 6.6, 9.15)
    assert PARAMETERS["cifar10-c-bar"]["sparkles"] == (0.7, 3.5, 5.6, 6.3, 7.0)


@pytest.mark.parametrize("protocol, name", CASES)
def test_every_corruption_and_severity_runs_on_real_photos_and_stays_in_range(protocol, name, imagenet_photos,
                                                                              cifar_photos):
    images = batch(protocol, imagenet_photos, cifar_photos, 3)
    quality = []
    for severity in range(1, 6):
        streams = image_streams(0, range(len(images)), name, severity)
        out = corrupt(images, name, severity, protocol=protocol, generator=streams)
        assert out.shape == images.shape and out.dtype == images.dtype
        assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
        assert torch.equal(out * 255, (out * 255).round())  # stored as 8-bit levels (and JPEG q85 for ImageNet)
        assert torch.equal(out, corrupt(images, name, severity, protocol=protocol, generator=streams))
        assert not torch.equal(out, images)
        quality.append(psnr(out, images))
    assert quality[4] < quality[0], f"PSNR by severity {quality}"


@pytest.mark.parametrize("protocol", C_BAR_PROTOCOLS)
def test_an_image_gets_the_same_pixels_in_any_batch(protocol, imagenet_photos, cifar_photos):
    """Per-image streams: whole batch, pairs and single images give identical pixels, so an
    evaluation's counts are identical at any batch size."""
    images = batch(protocol, imagenet_photos, cifar_photos, 3)
    index = list(range(40, 40 + len(images)))
    for name in names(protocol):
        whole = corrupt(images, name, 4, protocol=protocol, generator=image_streams(3, index, name, 4))
        for size in (1, 2):
            parts = torch.cat([corrupt(images[i : i + size], name, 4, protocol=protocol,
                                       generator=image_streams(3, index[i : i + size], name, 4))
                               for i in range(0, len(images), size)])
            assert torch.equal(whole, parts), (name, size)
        other = corrupt(images, name, 4, protocol=protocol, generator=image_streams(4, index, name, 4))
        if name != "circular_motion_blur":  # the only one without randomness
            assert not torch.equal(whole, other), name


@pytest.mark.parametrize("protocol, name", CASES)
def test_pixels_match_the_numpy_version_of_the_definitions_given_the_same_draws(protocol, name, imagenet_photos,
                                                                                cifar_photos):
    """The parameters each image draws, rendered by the tensor code and by the per-image NumPy
    version: within one 8-bit level (rounding at the generators' truncation), except caustic
    refraction's rare pixels whose lens normal sits on the generator's 'straight through'
    threshold, where float32 light tips the other way (at most 0.01 % of values)."""
    images = batch(protocol, imagenet_photos, cifar_photos, 2)
    corruption = CORRUPTIONS[name]
    size = images.shape[-1]
    for severity in range(1, 6):
        value = PARAMETERS[protocol][name][severity - 1]
        params = corruption.sample(Draws(len(images), images.device, image_streams(1, range(len(images)), name,
                                                                                   severity)), size, value)
        ours = truncate_to_uint8(corruption.render(images, params, value)).permute(0, 2, 3, 1).numpy().astype(int)
        theirs = np.stack([
            reference_apply(name, (image * 255).round().byte().permute(1, 2, 0).numpy(), value,
                            {key: tensor[i].numpy() for key, tensor in params.items()})
            for i, image in enumerate(images)]).astype(int)
        difference = np.abs(ours - theirs)
        off = (difference > 1).mean()
        assert off <= (1e-4 if name == "caustic_refraction" else 0), (name, severity, off, difference.max())


@pytest.mark.parametrize("name", ["blue_noise_sample", "brownish_noise", "pinch_and_twirl", "checkerboard_cutout"])
def test_odd_sizes_follow_the_definitions_too(name, cifar_photos):
    """An odd side takes the generators' other branches (the spectrum's centre column)."""
    images = torch.nn.functional.interpolate(cifar_photos[:4], size=(33, 33), mode="bilinear", align_corners=False)
    images = (images.clamp(0, 1) * 255).round() / 255
    corruption, value = CORRUPTIONS[name], PARAMETERS["cifar10-c-bar"][name][2]
    params = corruption.sample(Draws(4, images.device, image_streams(2, range(4), name, 3)), 33, value)
    ours = truncate_to_uint8(corruption.render(images, params, value)).permute(0, 2, 3, 1).numpy().astype(int)
    theirs = np.stack([reference_apply(name, (image * 255).round().byte().permute(1, 2, 0).numpy(), value,
                                       {key: tensor[i].numpy() for key, tensor in params.items()})
                       for i, image in enumerate(images)]).astype(int)
    assert np.abs(ours - theirs).max() <= 1


def test_the_batched_line_rasteriser_is_scikit_image_s_line_aa():
    """Every line with extents up to 40 px in every direction, from a point near the origin."""
    extent = torch.arange(41)
    rows, cols = torch.meshgrid(extent, extent, indexing="ij")
    ends = []
    for sign_r in (1, -1):
        for sign_c in (1, -1):
            ends.append((torch.full_like(rows, 3), torch.full_like(rows, -2), 3 + sign_r * rows, -2 + sign_c * cols))
    r0, c0, r1, c1 = (torch.cat([e[k].flatten() for e in ends]) for k in range(4))
    got_r, got_c, got_v, valid = line_aa_batch(r0, c0, r1, c1, longest=40)
    for k in range(len(r0)):
        want_r, want_c, want_v = line_aa(int(r0[k]), int(c0[k]), int(r1[k]), int(c1[k]))
        keep = valid[k]
        assert np.array_equal(got_r[k][keep].numpy(), want_r) and np.array_equal(got_c[k][keep].numpy(), want_c)
        np.testing.assert_allclose(got_v[k][keep].numpy(), want_v, rtol=0, atol=1e-12)


@pytest.mark.parametrize("protocol", C_BAR_PROTOCOLS)
@pytest.mark.parametrize("severity", [0, 6])
def test_severity_0_and_6_are_refused(protocol, severity):
    images = torch.rand(1, 3, 224, 224)
    with pytest.raises(CorruptionError, match=r"severity must be an integer from 1 to 5, got "
                                               rf"{severity} \(levels 1-5 of {protocol} are its generator's"):
        corrupt(images, names(protocol)[0], severity, protocol=protocol)
    with pytest.raises(CorruptionError, match="severity must be an integer from 1 to 5"):
        corrupt_to_uint8(images, names(protocol)[0], severity, protocol=protocol)


@pytest.mark.parametrize(
    "name, protocol, message",
    [
        ("fog", "imagenet-c-bar", "corruption 'fog' is not part of protocol 'imagenet-c-bar' (it is in "
                                  "imagecorruptions, imagenet-c, cifar10-c)"),
        ("ripple", "imagenet-c-bar", "corruption 'ripple' is not part of protocol 'imagenet-c-bar' (it is in "
                                     "cifar10-c-bar)"),
        ("caustic_refraction", "imagenet-c", "(it is in imagenet-c-bar); imagenet-c has the 19 of ImageNet-C"),
        ("caustic_refractoin", "imagenet-c-bar", "unknown corruption 'caustic_refractoin' (did you mean "
                                                 "caustic_refraction"),
    ],
)
def test_a_corruption_outside_its_protocol_gets_one_clear_error(name, protocol, message):
    with pytest.raises(CorruptionError, match=re.escape(message)):
        corrupt(torch.rand(1, 3, 224, 224), name, 1, protocol=protocol)


def test_c_bar_images_must_be_square_and_large_enough():
    with pytest.raises(CorruptionError, match=re.escape("defined on square images")):
        corrupt(torch.rand(1, 3, 224, 240), "sparkles", 1, protocol="imagenet-c-bar")
    with pytest.raises(CorruptionError, match=re.escape("needs images of at least 224×224 px")):
        corrupt(torch.rand(1, 3, 32, 32), "sparkles", 1, protocol="imagenet-c-bar")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("protocol", C_BAR_PROTOCOLS)
def test_cuda_draws_the_cpu_s_numbers_and_gives_its_pixels(protocol, imagenet_photos, cifar_photos):
    """The same per-image streams on CUDA: within one 8-bit level of the CPU (float sums in
    another order), and identical at any batch size there too. Measured figures are printed."""
    images = batch(protocol, imagenet_photos, cifar_photos, 4)
    index = list(range(len(images)))
    for name in names(protocol):
        for severity in (1, 5):
            streams = image_streams(5, index, name, severity)
            cpu = corrupt_to_uint8(images, name, severity, protocol=protocol, generator=streams).int()
            cuda = corrupt_to_uint8(images.cuda(), name, severity, protocol=protocol,
                                    generator=streams.to("cuda")).cpu().int()
            off = (cpu - cuda).abs()
            print(f"{protocol} {name} {severity}: {100 * (off > 0).float().mean():.4f} % of values differ, "
                  f"{100 * (off > 1).float().mean():.4f} % by more than one level")
            assert (off > 1).float().mean() <= (1e-3 if name == "caustic_refraction" else 1e-4), (name, severity)
            halves = torch.cat([corrupt_to_uint8(images[i : i + 2].cuda(), name, severity, protocol=protocol,
                                                 generator=image_streams(5, index[i : i + 2], name, severity, "cuda"))
                                for i in (0, 2)]).cpu().int()
            assert torch.equal(halves, cuda), (name, severity)
