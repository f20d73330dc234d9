"""Native FAB (robustbench_gcp.attacks.fab) against the reference in pyautoattack: the box-constrained
hyperplane projections on random inputs (live), and the attack on the pretrained CIFAR ResNet-20
against pyautoattack's recorded outcomes (tests/references.py)."""

from __future__ import annotations

import importlib

import pytest
import torch
from conftest import labelled_cifar
from references import flags_of, recorded

from robustbench_gcp.attacks.fab import fab, projection
from robustbench_gcp.rng import image_streams

fab_module = importlib.import_module("robustbench_gcp.attacks.fab")  # the module, whatever the package exports


def reference_projection(norm):
    """pyautoattack's projection: cheap enough to run live, on random hyperplanes."""
    projections = pytest.importorskip("pyautoattack.fab_projections", reason="the reference FAB is in pyautoattack")
    return {"linf": projections.projection_linf, "l2": projections.projection_l2}[norm]


def sizes(x, norm):
    flat = x.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)


def hyperplanes(rows=96, dims=300):
    """Points in [0, 1] (some coordinates on the faces), weights with zero and tiny entries, and
    offsets from ~0 (nothing saturates) to far beyond what the box can reach, on both sides."""
    points = torch.rand(rows, dims)
    points[:, :20] = torch.randint(0, 2, (rows, 20)).float()
    w = torch.randn(rows, dims) * torch.rand(rows, 1) * 3
    w[:, 20:40] = 0
    w[::5, 40:60] *= 1e-9
    side = torch.where(torch.rand(rows) < 0.5, 1.0, -1.0)
    b = (w * points).sum(1) + side * torch.logspace(-5, 3, rows) * w.abs().sum(1) / dims
    return points, w, b


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_projection_matches_reference(norm):
    points, w, b = hyperplanes()
    ours = projection(points, w, b, norm)
    theirs = reference_projection(norm)(points.clone(), w.clone(), b.clone())
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0), (ours - theirs).abs().max()  # float32 rounding
    moved = points + ours
    assert moved.min() >= 0 and moved.max() <= 1
    kept = w.abs() >= 1e-8 if norm == "l2" else w != 0
    residual = ((w * kept) * moved).sum(1) - b
    reachable = residual.abs() <= 1e-4 * (1 + b.abs())
    assert 0.2 < reachable.float().mean() < 0.95  # both regimes occur
    # where the plane is out of reach, the box corner that gets closest: every weighted coordinate on a face
    corner = torch.where(w * torch.sign((w * points).sum(1) - b)[:, None] > 0, 0.0, 1.0)
    far = ~reachable
    assert torch.equal(moved[far][kept[far]], corner[far][kept[far]])


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_projection_without_box_constraint_is_the_plain_one(norm):
    """Close to the plane no coordinate reaches a face: the unconstrained least-norm step (in
    float64, where w·t − b keeps its digits)."""
    points = torch.rand(16, 200, dtype=torch.float64) * 0.5 + 0.25
    w = torch.randn(16, 200, dtype=torch.float64)
    gap = torch.randn(16, dtype=torch.float64) * 1e-3
    b = (w * points).sum(1) + gap
    if norm == "linf":
        expected = gap[:, None] * torch.sign(w) / w.abs().sum(1, keepdim=True)
    else:
        expected = gap[:, None] * w / (w**2).sum(1, keepdim=True)
    assert torch.allclose(projection(points, w, b, norm), expected, atol=1e-12, rtol=1e-8)
    assert torch.allclose(reference_projection(norm)(points, w.clone(), b.clone()), expected, atol=1e-12, rtol=1e-8)


@pytest.fixture(scope="module")
def photos(cifar_test_dir):
    return labelled_cifar(cifar_test_dir, 64)


FAB_T = {"linf": 0.5 / 255, "l2": 0.05}


def fab_t_against_the_reference(model, images, labels, norm):
    """Native FAB-T (3 targets, 15 steps) and the rows it leaves robust, checked against
    pyautoattack's recorded ones: the same rows are fooled (1/64 allowed for float rounding at
    the boundary; none differ here)."""
    robust_theirs = flags_of(recorded(f"pyautoattack-fab-t-{norm}")["robust"])
    streams = image_streams(0, range(len(images)), f"fab-t-{norm}", 0)
    ours = fab(lambda x: model(x).float(), images, labels, torch.full((len(images),), FAB_T[norm]), streams,
               norm=norm, targets=3, steps=15)
    with torch.no_grad():
        clean = model(images).argmax(1) == labels
        robust_ours = (model(ours).argmax(1) == labels) & clean
    assert (robust_ours != robust_theirs).sum() <= 1, (norm, robust_ours.float().mean(), robust_theirs.float().mean())
    return ours, robust_ours, clean


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fab_t_robust_accuracy_matches_reference(resnet20, photos, norm):
    """FAB-T without restarts is deterministic: the reference's rows are fooled, and the outputs
    respect ε and the box."""
    images, labels = photos
    ours, robust_ours, clean = fab_t_against_the_reference(resnet20, images, labels, norm)
    assert 0.1 < robust_ours.float().mean() < clean.float().mean() - 0.1  # ε leaves something to compare
    assert (sizes(ours - images, norm) <= FAB_T[norm] + 1e-6).all() and ours.min() >= 0 and ours.max() <= 1
    assert torch.equal(ours[robust_ours], images[robust_ours])


def test_a_perturbed_native_attack_fails_the_recorded_reference(resnet20, photos, monkeypatch):
    """The records catch drift: FAB-T with a tenth of its extrapolation step (η 1.05 → 0.105)
    fools other rows than the reference did, and the comparison fails."""
    real_search = fab_module._boundary_search
    monkeypatch.setattr(fab_module, "_boundary_search", lambda *args, eta, **kwargs: real_search(
        *args, eta=eta / 10, **kwargs))
    with pytest.raises(AssertionError, match="linf"):
        fab_t_against_the_reference(resnet20, *photos, "linf")


def test_untargeted_fab_finds_the_reference_distances(resnet20, photos):
    """Untargeted FAB (all classes' hyperplanes) with no ε limit: per image the same smallest L∞
    perturbation as the reference, up to rounding."""
    images, labels = photos[0][:16], photos[1][:16]
    theirs = torch.tensor(recorded("pyautoattack-fab-linf-distances")["linf_distance"])
    streams = image_streams(0, range(len(images)), "fab", 0)
    ours = fab(lambda x: resnet20(x).float(), images, labels, torch.full((16,), 1e6), streams, norm="linf", steps=8)
    with torch.no_grad():
        clean = resnet20(images).argmax(1) == labels
    assert torch.equal(sizes(ours - images, "linf") > 0, theirs > 0)
    found = clean & (theirs > 0)
    assert found.sum() >= 8
    ratio = sizes(ours - images, "linf")[found] / theirs[found]
    assert (ratio - 1).abs().max() < 0.02 and (ratio - 1).abs().median() < 1e-3, ratio


@pytest.mark.parametrize("norm, eps, targets", [("linf", [0, 0.25 / 255, 0.5 / 255], 0), ("l2", [0, 0.02, 0.05], 2)])
def test_rows_do_not_depend_on_their_batch(resnet20, photos, monkeypatch, norm, eps, targets):
    """Each row's result, and each random restart's start and outcome, are the same in one batch
    or split in two (where attempts share a run, a grouping may also run restarts whose results
    it discards). The model runs one row at a time here: on the CPU its kernels round
    differently for batches of 1 or 2, and this test is about FAB itself."""

    def one_at_a_time(x):
        return torch.cat([resnet20(x[i:i + 1]).float() for i in range(len(x))])

    restarted = {}  # (image, start, target) → outcomes (best, distance) of the rows run from a random start

    def spy(logits, x0, labels, start, target, **settings):
        best, size = search(logits, x0, labels, start, target, **settings)
        keys = zip(x0.sum((1, 2, 3)).tolist(), start.sum((1, 2, 3)).tolist(),
                   [None] * len(x0) if target is None else target.tolist())
        outcomes = zip(best.sum((1, 2, 3)).tolist(), size.tolist())
        for key, outcome, moved in zip(keys, outcomes, (start != x0).flatten(1).any(1).tolist()):
            if moved:
                restarted.setdefault(key, set()).add(outcome)
        return best, size

    search = fab_module._boundary_search
    monkeypatch.setattr(fab_module, "_boundary_search", spy)
    images, labels = photos
    with torch.no_grad():
        correct = (resnet20(images).argmax(1) == labels).nonzero().squeeze(1)[:6]
    images, labels = images[correct], labels[correct]
    x, y = images.repeat(len(eps), 1, 1, 1), labels.repeat(len(eps))
    radii = torch.tensor(eps).repeat_interleave(len(images))
    streams = image_streams(0, range(len(x)), f"fab-{norm}", 0)
    settings = dict(norm=norm, targets=targets, restarts=2, steps=3)
    whole = fab(one_at_a_time, x, y, radii, streams, **settings)
    restarted_whole = dict(restarted)
    restarted.clear()
    order = torch.randperm(len(x))
    split = torch.empty_like(whole)
    for part in (order[:7], order[7:]):
        split[part] = fab(one_at_a_time, x[part], y[part], radii[part], streams[part], **settings)
    assert torch.equal(whole, split)
    both = restarted_whole.keys() & restarted.keys()
    assert len(both) >= 4 and all(restarted[key] == restarted_whole[key] and len(restarted[key]) == 1 for key in both)
    with torch.no_grad():
        fooled = resnet20(whole).argmax(1) != y
    assert 2 <= fooled.sum() < (radii > 0).sum()  # the attack bites, and leaves rows for the restarts
    assert torch.equal(whole[radii == 0], x[radii == 0])
    assert (sizes(whole - x, norm) <= radii + 1e-6).all() and whole.min() >= 0 and whole.max() <= 1
