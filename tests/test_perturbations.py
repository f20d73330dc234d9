"""The perturbation engine and the stability metrics: hand-made prediction sequences with known
FP and T5D, the evaluator's ranking formula as an oracle, and generated sequences checked frame
by frame on real CIFAR-10 photos and synthetic images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as PF
from conftest import shared_path
from PIL import Image
from scipy.stats import rankdata
from torchvision.transforms import InterpolationMode

from robustbench_gcp.perturbations import PerturbationError, names, perturb_to_uint8, sequence_length, spec
from robustbench_gcp.perturbations.sequences import flow_down
from robustbench_gcp.rng import image_streams
from robustbench_gcp.stability import (
    flip_probability,
    mean_rate,
    normalized_rates,
    ranked_classes,
    top5_distance,
    top5_rank_distance,
    video_counts,
)


def sequence(*top1: int, classes: int = 10) -> torch.Tensor:
    """Class lists (1, T, 5) whose top-1 is ``top1`` (the rest follow in class order)."""
    rows = [[c, *[k for k in range(classes) if k != c][:4]] for c in top1]
    return torch.tensor([rows])


# ----------------------------------------------------------------------------- metrics

def test_flip_probability_of_hand_made_sequences():
    video = sequence(0, 1, 1, 0)
    assert video_counts(video, 1, noise=False).tolist() == [[2, 4, 3]]  # pairs (0,1) (1,2) (2,3): two flips
    assert video_counts(video, 2, noise=False)[0, 0::2].tolist() == [2, 2]  # (0,2) (1,3): both flip
    assert video_counts(video, 3, noise=False)[0, 0::2].tolist() == [0, 1]  # (0,3): the same class
    for difficulty in (1, 2, 3):  # noise: every frame against the first, whatever the difficulty
        assert video_counts(video, difficulty, noise=True)[0, 0::2].tolist() == [2, 3]
    constant = sequence(*[4] * 31)
    for noise in (False, True):
        assert video_counts(constant, 1, noise).tolist() == [[0, 0, 30]]
    # averaged per video first: a video with 1 flip in 2 pairs and one with 0 in 4 give 0.25, not 1/6
    assert flip_probability(np.array([[1, 0, 2], [0, 0, 4]])) == pytest.approx(0.25)
    assert top5_distance(np.array([[0, 3, 2], [0, 0, 4]])) == pytest.approx(0.75)


def test_top5_distance_of_known_rankings():
    first = torch.tensor([[0, 1, 2, 3, 4]])
    assert top5_rank_distance(first, first).item() == 0
    assert top5_rank_distance(first, torch.tensor([[1, 0, 2, 3, 4]])).item() == 2  # one swap at the top
    assert top5_rank_distance(first, torch.tensor([[0, 1, 2, 3, 9]])).item() == 1  # the 5th fell out
    assert top5_rank_distance(first, torch.tensor([[5, 6, 7, 8, 9]])).item() == 15  # 5+4+3+2+1


def evaluator_top5_distance(logits: np.ndarray, difficulty: int, noise: bool) -> float:
    """The ImageNet-P evaluator's ranking distance, written from its definition: ordinal ranks of
    every class per frame, σ = ranks₂[argsort(ranks₁)], d(σ) = Σ_{j<5} |j − min(σ_j − 1, 5)|,
    chains of frames d apart (the noise sequences: frame 0 against every later frame)."""
    capped = np.minimum(np.arange(logits.shape[-1]), 5)
    result = 0.0
    for video in logits:
        ranks = [rankdata(-frame, method="ordinal").astype(int) for frame in video]
        step = 1 if noise else difficulty
        distances = []
        for start in range(step):
            first = ranks[start]
            for second in ranks[start::step][1:]:
                sigma = second[np.argsort(first)]
                distances.append(np.abs(capped[:5] - capped[sigma - 1][:5]).sum())
                if not noise:
                    first = second
        result += np.mean(distances) / len(logits)
    return result


@pytest.mark.parametrize("difficulty,noise", [(1, False), (2, False), (3, False), (2, True)])
def test_top5_distance_matches_the_evaluator_formula(difficulty, noise):
    generator = torch.Generator().manual_seed(difficulty)
    logits = torch.randn(6, 12, 20, generator=generator)
    logits[0, :, 3] = logits[0, :, 4]  # ties break towards the lower class, as ordinal ranks do
    counts = video_counts(ranked_classes(logits), difficulty, noise).numpy()
    assert top5_distance(counts) == pytest.approx(evaluator_top5_distance(logits.numpy(), difficulty, noise))


def test_rates_are_relative_to_the_baseline():
    rates = normalized_rates({"rotate": 0.02, "snow": 0.03}, {"rotate": 0.04, "snow": 0.03})
    assert rates == pytest.approx({"rotate": 50.0, "snow": 100.0})
    assert mean_rate(rates, names("test")) is None  # not all 10 test perturbations
    assert mean_rate({name: 80.0 for name in names("test")}, names("test")) == pytest.approx(80.0)
    assert "snow" in names("test") and "spatter" in names("test", "cifar10-p")  # each evaluator's own ten
    assert "spatter" not in names("test") and "snow" not in names("test", "cifar10-p")


# ----------------------------------------------------------------------------- sequences

@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """8 real CIFAR-10 test photos, float in [0, 1]."""
    root = shared_path("cifar10_test_jpg/test")
    paths = [sorted(folder.glob("*.jpg"))[0] for folder in sorted(root.iterdir())][:8]
    return torch.stack([PF.pil_to_tensor(Image.open(p).convert("RGB")) for p in paths]).float() / 255


def test_frame_counts_and_shapes(photos):
    expected = {"motion_blur": 21, "translate": 16}
    for name in names("all"):
        assert sequence_length(name, "cifar10-p") == expected.get(name, 31)
        assert sequence_length(name, "imagenet-p") == (41 if name == "translate" else 31)
    videos = perturb_to_uint8(photos[:2], "motion_blur", protocol="cifar10-p")
    assert videos.shape == (2, 21, 3, 32, 32) and videos.dtype == torch.uint8
    canvas = torch.rand(1, 3, spec("imagenet-p").canvas, spec("imagenet-p").canvas)
    assert perturb_to_uint8(canvas, "translate", protocol="imagenet-p").shape == (1, 41, 3, 224, 224)


@pytest.mark.parametrize("protocol", ["cifar10-p", "imagenet-p"])
def test_frame_zero_is_the_clean_image_where_the_original_is(photos, protocol):
    images = torch.nn.functional.interpolate(photos[:2], size=spec(protocol).canvas) if protocol == "imagenet-p" \
        else photos[:2]
    size = spec(protocol).size
    top = (images.shape[-1] - size) // 2
    clean = (images[..., top : top + size, top : top + size] * 255 + 1e-4).floor().to(torch.uint8)
    for name in ("gaussian_noise", "shot_noise", "speckle_noise", "zoom_blur"):
        for difficulty in (1, 3):
            streams = image_streams(0, [0, 1], name, difficulty)
            videos = perturb_to_uint8(images, name, protocol=protocol, difficulty=difficulty, generator=streams)
            assert torch.equal(videos[:, 0], clean), name
            assert not torch.equal(videos[:, 1], clean), name
    identity = {"translate": 20 if protocol == "imagenet-p" else 7, "rotate": 15, "shear": 15, "brightness": 15,
                "scale": 24 if protocol == "imagenet-p" else 15}  # (tilt has none: its middle frame shrinks by f/(f+1))
    for name, frame in identity.items():  # the frame with no change is the clean image (up to 8-bit rounding)
        videos = perturb_to_uint8(images, name, protocol=protocol)
        assert (videos[:, frame].int() - clean.int()).abs().max() <= 1, name
        assert not torch.equal(videos[:, 0], clean), name


def test_per_image_streams_make_sequences_independent_of_the_batch(photos):
    for name in names("all"):
        streams = image_streams(3, range(8), f"perturbation/{name}", 2)
        together = perturb_to_uint8(photos, name, protocol="cifar10-p", difficulty=2, generator=streams)
        alone = torch.cat([perturb_to_uint8(photos[i : i + 1], name, protocol="cifar10-p", difficulty=2,
                                            generator=streams[i : i + 1]) for i in (5, 2)])
        assert torch.equal(together[[5, 2]], alone), name
    first = perturb_to_uint8(photos[:2], "snow", protocol="cifar10-p", generator=image_streams(0, [0, 1], "s", 1))
    other = perturb_to_uint8(photos[:2], "snow", protocol="cifar10-p", generator=image_streams(1, [0, 1], "s", 1))
    assert not torch.equal(first, other)


def test_noise_strength_grows_with_the_difficulty(photos):
    spread = []
    for difficulty in (1, 2, 3):
        videos = perturb_to_uint8(photos, "gaussian_noise", protocol="cifar10-p", difficulty=difficulty,
                                  generator=image_streams(0, range(8), "g", difficulty)).float() / 255
        spread.append((videos[:, 1:] - videos[:, :1]).std().item())
    assert spread[0] < spread[1] < spread[2]
    assert spread[0] == pytest.approx(0.02, rel=0.25)  # std 0.02, a little less where the clip bites


def centroid(frame: torch.Tensor) -> tuple[float, float]:
    weights = frame.float().sum(0)
    rows, cols = torch.meshgrid(torch.arange(frame.shape[-2]), torch.arange(frame.shape[-1]), indexing="ij")
    return float((weights * rows).sum() / weights.sum()), float((weights * cols).sum() / weights.sum())


def test_geometric_sequences_move_content_by_the_original_amounts():
    side = spec("imagenet-p").canvas
    canvas = torch.zeros(1, 3, side, side)
    canvas[..., side // 2 - 3 : side // 2 + 3, side // 2 + 40 : side // 2 + 46] = 1  # a dot 43 px right of centre
    centre = 112 - 0.5  # the 224-px frame's centre in pixel-index coordinates
    translated = perturb_to_uint8(canvas, "translate", protocol="imagenet-p")[0]
    for frame in (0, 13, 20, 40):  # shifted by frame − 20 px, to the right for positive shifts
        assert centroid(translated[frame])[1] == pytest.approx(centre + 43 + frame - 20, abs=0.01)
    rotated = perturb_to_uint8(canvas, "rotate", protocol="imagenet-p")[0]
    for frame in (0, 10, 30):  # frame − 15 degrees, clockwise on the screen for positive angles
        row, col = centroid(rotated[frame])
        angle = np.degrees(np.arctan2(row - centre, col - centre))
        assert angle == pytest.approx(frame - 15, abs=0.5)
        assert np.hypot(row - centre, col - centre) == pytest.approx(43, abs=0.5)
    scaled = perturb_to_uint8(canvas, "scale", protocol="imagenet-p")[0]
    for frame in (0, 8, 30):  # scale 0.40 + 0.025 · frame about the centre
        assert centroid(scaled[frame])[1] - centre == pytest.approx(43 * (0.40 + 0.025 * frame), abs=0.3)
    tilted = perturb_to_uint8(canvas, "tilt", protocol="imagenet-p")[0]
    for frame in (0, 15, 30):  # where the generator's homography takes the dot's centre, in the 224-px crop
        matrix = tilt_matrix(frame - 15, side, spec("imagenet-p").focal)
        x, y, w = matrix @ np.array([side // 2 + 42.5, side // 2 - 0.5, 1.0])
        offset = (side - 224) // 2
        assert centroid(tilted[frame]) == pytest.approx((y / w - offset, x / w - offset), abs=0.6)


def test_cifar_geometric_frames_match_the_libraries_the_generator_used(photos):
    """translate / rotate / scale against torchvision's PIL affine, tilt against OpenCV's
    warpPerspective with the generator's matrix: exact for translate, within one level (8-bit
    rounding) elsewhere, wherever a frame's pixel comes from inside the image (at the image's
    edge the libraries treat the black fill differently)."""
    cv2 = pytest.importorskip("cv2")
    pil = [Image.fromarray(np.ascontiguousarray(p.mul(255).round().byte().permute(1, 2, 0).numpy())) for p in photos]
    bilinear = InterpolationMode.BILINEAR
    references = {
        "translate": lambda im, i: PF.affine(im, angle=0, translate=(i - 7, 0), scale=1.0, shear=0),
        "rotate": lambda im, i: PF.affine(im, angle=i - 15, translate=(0, 0), scale=1.0, shear=0,
                                          interpolation=bilinear),
        "scale": lambda im, i: PF.affine(im, angle=0, translate=(0, 0), scale=(i * 2 + 70) / 100, shear=0,
                                         interpolation=bilinear),
        "tilt": lambda im, i: cv2.warpPerspective(np.array(im), tilt_matrix(0.75 * (i - 15), 32, np.hypot(32, 32)),
                                                  (32, 32)),
    }
    images = torch.stack([PF.pil_to_tensor(im) for im in pil]).float() / 255
    for name, reference in references.items():
        ours = perturb_to_uint8(images, name, protocol="cifar10-p").permute(0, 1, 3, 4, 2).int().numpy()
        theirs = np.stack([[np.array(reference(im, i)) for i in range(ours.shape[1])] for im in pil]).astype(int)
        inside = perturb_to_uint8(torch.ones(1, 3, 32, 32), name, protocol="cifar10-p").permute(0, 1, 3, 4, 2) == 255
        difference = np.abs(ours - theirs)[inside.expand(len(pil), -1, -1, -1, -1).numpy()]
        assert difference.size > 0.5 * ours.size and difference.max() <= (0 if name == "translate" else 1), name


def tilt_matrix(degrees: float, side: int, f: float) -> np.ndarray:
    """The generators' tilt homography of a square image, as they build it (f: the image diagonal)."""
    t, c = np.radians(degrees), side / 2
    to_plane = np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1], [0, 0, 1]])
    rx = np.array([[1, 0, 0, 0], [0, np.cos(t), -np.sin(t), 0], [0, np.sin(t), np.cos(t), 0], [0, 0, 0, 1]])
    ry = np.array([[np.cos(t), 0, -np.sin(t), 0], [0, 1, 0, 0], [np.sin(t), 0, np.cos(t), 0], [0, 0, 0, 1]])
    away = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, f], [0, 0, 0, 1]])
    project = np.array([[f, 0, c, 0], [0, f, c, 0], [0, 0, 1, 0]])
    return project @ away @ rx @ ry @ to_plane


def test_spatter_liquid_flows_down_like_numpy_convolve():
    liquid = torch.rand(2, 1, 9, 5, dtype=torch.float64)
    for kernel in ((0.05, 0.1, 0.15, 0.7), (0.2, 0.8)):
        expected = np.apply_along_axis(lambda v, k=kernel: np.convolve(v, np.array(k), mode="same"), 2,
                                       liquid.numpy())
        assert np.allclose(flow_down(liquid, kernel).numpy(), expected)


def test_bad_input_gets_one_clear_error(photos):
    with pytest.raises(PerturbationError, match="unknown perturbation 'fog'"):
        perturb_to_uint8(photos, "fog", protocol="cifar10-p")
    with pytest.raises(PerturbationError, match="unknown perturbation protocol"):
        perturb_to_uint8(photos, "rotate", protocol="imagenet-c")
    with pytest.raises(PerturbationError, match="at least 224 px"):
        perturb_to_uint8(photos, "rotate", protocol="imagenet-p")
    with pytest.raises(PerturbationError, match="difficulty must be 1, 2 or 3"):
        perturb_to_uint8(photos, "rotate", protocol="cifar10-p", difficulty=4)
    with pytest.raises(PerturbationError, match="float"):
        perturb_to_uint8((photos * 255).byte(), "rotate", protocol="cifar10-p")


def test_warping_only_the_needed_window_gives_the_full_canvas_frames():
    """The geometric sequences warp the centre of the 560-px canvas that their frame can reach,
    not the whole canvas: the frames are those of warping it all (to a float rounding, on about
    one value in 10,000)."""
    import torchvision.transforms.v2.functional as TF

    from robustbench_gcp.perturbations.sequences import centre, tilt_coefficients

    side = spec("imagenet-p").canvas
    canvas = torch.nn.functional.avg_pool2d(torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0)),
                                            5, 1, 2)
    bilinear = InterpolationMode.BILINEAR

    def full(frame: int, name: str) -> torch.Tensor:
        if name == "tilt":
            out = TF.perspective(canvas, None, None, interpolation=bilinear, fill=0.0,
                                 coefficients=tilt_coefficients(frame - 15, side, spec("imagenet-p").focal))
        else:
            settings = {"rotate": dict(angle=frame - 15.0), "shear": dict(shear=[frame - 15.0, 0.0]),
                        "scale": dict(scale=0.40 + 0.025 * frame)}[name]
            out = TF.affine(canvas, **{"angle": 0.0, "translate": [0, 0], "scale": 1.0, "shear": [0.0, 0.0],
                                       **settings}, interpolation=bilinear, fill=0.0)
        return (centre(out, 224) * 255).round().clamp(0, 255).to(torch.uint8)

    for name in ("rotate", "shear", "scale", "tilt"):
        frames = perturb_to_uint8(canvas, name, protocol="imagenet-p")[0]
        for frame in (0, 7, 15, 30):
            difference = (frames[frame].int() - full(frame, name)[0].int()).abs()
            assert difference.max() <= 1 and difference.float().mean() < 1e-3, (name, frame)
