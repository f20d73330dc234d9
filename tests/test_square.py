"""The native Square Attack with the pretrained CIFAR ResNet-20 on real CIFAR-10 photos."""

from __future__ import annotations

import pytest
import torch
from conftest import labelled_cifar
from references import SQUARE_QUERIES, flags_of, recorded, square_rows

from robustbench_gcp.attacks.rows import norms
from robustbench_gcp.attacks.square import p_selection, square
from robustbench_gcp.rng import image_streams


@pytest.fixture(scope="module")
def photos(cifar_test_dir):
    return labelled_cifar(cifar_test_dir, 80)


def logits_of(model):
    return lambda x: model(x).float()


def rows(images, labels, radii):
    """Every image at every radius, radius-major, with one stream per row."""
    count = len(radii)
    x = images.repeat(count, 1, 1, 1)
    y = labels.repeat(count)
    r = torch.tensor(radii, dtype=torch.float32).repeat_interleave(len(images))
    return x, y, r, image_streams(0, range(len(x)), "square", 0)


def test_schedule_halves_p_at_the_reference_iterations():
    assert [p_selection(0.8, i) for i in (0, 10, 11, 50, 51, 200, 201, 8000, 8001)] == pytest.approx(
        [0.8, 0.8, 0.4, 0.4, 0.2, 0.2, 0.1, 0.8 / 256, 0.8 / 512])


@pytest.mark.parametrize("norm, radii", [("linf", [0, 1 / 255, 4 / 255]), ("l2", [0, 0.25])])
def test_rows_stay_in_their_ball_and_radius_zero_is_clean(resnet20, photos, norm, radii):
    images, labels = photos
    x, y, r, streams = rows(images[:16], labels[:16], radii)
    adv = square(logits_of(resnet20), x, y, r, streams, norm=norm, queries=40)
    assert adv.shape == x.shape and adv.min() >= 0 and adv.max() <= 1
    assert (norms(adv - x, norm) <= r + 1e-6).all()
    assert torch.equal(adv[r == 0], x[r == 0])
    assert (norms(adv - x, norm)[r > 0] > 0).all()  # every attacked row moved
    with torch.no_grad():
        fooled = resnet20(adv).argmax(1) != y
    assert fooled[r == r.max()].sum() > fooled[r == 0].sum()  # and the attack bites


@pytest.mark.parametrize("norm, radii", [("linf", [2 / 255, 8 / 255]), ("l2", [0.25, 1.0])])
def test_a_row_does_not_depend_on_its_batch(resnet20, photos, norm, radii):
    images, labels = photos
    x, y, r, streams = rows(images[:8], labels[:8], radii)
    logits = logits_of(resnet20)
    whole = square(logits, x, y, r, streams, norm=norm, queries=50)
    half = len(x) // 2
    first = square(logits, x[:half], y[:half], r[:half], streams[:half], norm=norm, queries=50)
    second = square(logits, x[half:], y[half:], r[half:], streams[half:], norm=norm, queries=50)
    assert torch.equal(torch.cat([first, second]), whole)
    order = torch.arange(len(x) - 1, -1, -1)
    reversed_ = square(logits, x[order], y[order], r[order], streams[order], norm=norm, queries=50)
    assert torch.equal(reversed_[order], whole)
    with torch.no_grad():
        assert (resnet20(whole).argmax(1) != y).any()  # rows were fooled at different iterations


@pytest.mark.slow
@pytest.mark.parametrize("norm, eps", [("linf", 8 / 255), ("l2", 1.0)])
def test_robust_accuracy_agrees_with_pyautoattack(resnet20, photos, norm, eps):
    """Both attacks on the ~64 correctly classified photos at 300 queries (pyautoattack's outcome
    recorded in tests/baselines/references/). At these radii most rows are fooled well before the
    end, so the outcome hardly depends on the draws: over three seeds each, both implementations
    left 9–10 (L∞) and 14–16 (L2) of 63 robust; a third of the queries (100) leaves over twice as
    many, so a markedly weaker attack fails the 6-point bound."""
    x, y = square_rows()
    assert torch.equal(x, photos[0][(resnet20(photos[0]).argmax(1) == photos[1])][:64])  # the same rows
    queries = SQUARE_QUERIES
    robust_theirs = flags_of(recorded(f"pyautoattack-square-{norm}")["robust"]).float().mean().item() * 100
    ours = square(logits_of(resnet20), x, y, torch.full((len(x),), eps), image_streams(0, range(len(x)), "square", 0),
                  norm=norm, queries=queries)
    with torch.no_grad():
        robust_ours = (resnet20(ours).argmax(1) == y).float().mean().item() * 100
    assert 0 < robust_theirs < 50
    assert abs(robust_ours - robust_theirs) <= 6.0, (robust_ours, robust_theirs)
    assert (norms(ours - x, norm) <= eps + 1e-6).all()
