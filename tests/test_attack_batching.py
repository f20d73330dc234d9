"""The batched AutoAttack loops give every row the numbers of the one-after-the-other ones: APGD's
and FAB's attempts (targets, restarts) run as rows of one batch equal the attempts run in turn on
the points still robust, and masked rows, dropped only at the periodic host checks, change
nothing. The pretrained CIFAR ResNet-20 on real CIFAR-10 photos; the model runs one row at a time,
so the CPU's rounding for different batch sizes stays out of the comparison."""

from __future__ import annotations

import importlib

import pytest
import torch
from conftest import labelled_cifar

from robustbench_gcp.attacks.apgd import apgd
from robustbench_gcp.attacks.fab import fab
from robustbench_gcp.attacks.square import square
from robustbench_gcp.rng import image_streams

rows_module = importlib.import_module("robustbench_gcp.attacks.rows")
apgd_module = importlib.import_module("robustbench_gcp.attacks.apgd")
fab_module = importlib.import_module("robustbench_gcp.attacks.fab")
ALL_AT_ONCE = 10**6  # a row budget no test reaches: every attempt in one run


@pytest.fixture(scope="module")
def correct(cifar_test_dir, resnet20):
    """Correctly classified photos, the rows an attack has work on."""
    images, labels = labelled_cifar(cifar_test_dir, 40)
    with torch.no_grad():
        keep = resnet20(images).argmax(1) == labels
    return images[keep], labels[keep]


@pytest.fixture
def one_at_a_time(resnet20):
    def logits(x):
        return torch.cat([resnet20(x[i:i + 1]).float() for i in range(len(x))])

    return logits


def earliest_fooling_attempts(module, monkeypatch, model) -> list[torch.Tensor]:
    """Spy on ``module``'s runs of attempts: per run, the earliest attempt whose candidate fools
    each row (−1 where none does)."""
    found = []
    real = module.first_success

    def spy(logits, images, labels, attempts, run, max_rows=None):
        def recorded(active, numbers):
            candidates = run(active, numbers)
            with torch.no_grad():
                fooled = model(candidates.flatten(0, 1)).argmax(1).view(len(numbers), -1) != labels[active]
            found.append(torch.where(fooled.any(0), fooled.int().argmax(0) + numbers.start, -1))
            return candidates

        return real(logits, images, labels, attempts, recorded, max_rows)

    monkeypatch.setattr(module, "first_success", spy)
    return found


def rows_at(images, labels, radii, purpose):
    """Every image at every radius, radius-major, with one stream per row."""
    x, y = images.repeat(len(radii), 1, 1, 1), labels.repeat(len(radii))
    r = torch.tensor(radii).repeat_interleave(len(images))
    return x, y, r, image_streams(0, range(len(x)), purpose, 0)


@pytest.mark.parametrize("norm, radius, targets, restarts", [("linf", 1 / 510, 4, 1), ("l2", 0.1, 2, 2)])
def test_apgd_attempts_as_rows_equal_attempts_in_turn(resnet20, correct, one_at_a_time, monkeypatch, norm, radius,
                                                       targets, restarts):
    """APGD-T with every (target, restart) as rows of one run, its masked rows dropped every third
    step, is APGD-T run one attempt after the other, each on the images still robust: an image
    fooled by several attempts keeps the earliest one's example."""
    images, labels = correct[0][:10], correct[1][:10]
    x, y, r, streams = rows_at(images, labels, [radius], f"apgd-t-{norm}")
    settings = dict(norm=norm, targets=targets, restarts=restarts, steps=6)
    in_turn = apgd(one_at_a_time, x, y, r, streams, max_rows=1, **settings)
    earliest = earliest_fooling_attempts(apgd_module, monkeypatch, resnet20)
    monkeypatch.setattr(rows_module, "host_check_interval", lambda device: 3)
    together = apgd(one_at_a_time, x, y, r, streams, max_rows=ALL_AT_ONCE, **settings)
    assert torch.equal(together, in_turn)
    (attempts,) = earliest  # one run held every attempt
    assert (attempts > 0).any() and (attempts == 0).any(), attempts  # later attempts had rows to fool


def test_fab_attempts_as_rows_equal_attempts_in_turn(resnet20, correct, one_at_a_time, monkeypatch):
    """FAB-T with its targets and restarts (restart 0 from the image, shared by an image's radii;
    restart 1 from a random start) as rows of one run is FAB-T one attempt after the other."""
    images, labels = correct[0][:8], correct[1][:8]
    x, y, r, streams = rows_at(images, labels, [0, 0.3 / 255, 0.6 / 255], "fab-t")
    settings = dict(norm="linf", targets=3, restarts=2, steps=4)
    in_turn = fab(one_at_a_time, x, y, r, streams, max_rows=1, **settings)
    earliest = earliest_fooling_attempts(fab_module, monkeypatch, resnet20)
    together = fab(one_at_a_time, x, y, r, streams, max_rows=ALL_AT_ONCE, **settings)
    assert torch.equal(together, in_turn)
    (attempts,) = earliest
    assert (attempts > 0).any() and (attempts == 0).any(), attempts
    assert torch.equal(together[r == 0], x[r == 0])


@pytest.mark.parametrize("norm, radii", [("linf", [1 / 255, 4 / 255]), ("l2", [0.25, 1.0])])
def test_square_masked_rows_change_nothing(correct, one_at_a_time, monkeypatch, norm, radii):
    """Square with fooled rows masked and dropped every 10th iteration (as on an accelerator), on
    the whole batch, equals Square dropping them at once, on the batch split in two."""
    x, y, r, streams = rows_at(*(t[:6] for t in correct), radii, "square")
    monkeypatch.setattr(rows_module, "host_check_interval", lambda device: 10)
    masked = square(one_at_a_time, x, y, r, streams, norm=norm, queries=25)
    monkeypatch.setattr(rows_module, "host_check_interval", lambda device: 1)
    order = torch.randperm(len(x))
    at_once = torch.empty_like(masked)
    for part in (order[:5], order[5:]):
        at_once[part] = square(one_at_a_time, x[part], y[part], r[part], streams[part], norm=norm, queries=25)
    assert torch.equal(masked, at_once)
    with torch.no_grad():
        fooled = one_at_a_time(masked).argmax(1) != y
    assert 0 < fooled.sum() < len(x)  # rows stopped while others ran on
