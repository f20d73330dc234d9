"""AutoAttack in `gcp-robust eval-attack`: native APGD/FAB/Square cascades on the pretrained CIFAR
ResNet-20 and real CIFAR-10 photos, against the pyautoattack reference."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from conftest import labelled_cifar, stored_cells
from references import eval_attack_args, eval_attack_outcomes, recorded
from torch import nn

from robustbench_gcp.attacks import parse_epsilons
from robustbench_gcp.attacks.autoattack import COMPONENTS, AutoAttackError, AutoAttackSettings, run_component, stages
from robustbench_gcp.attacks.rows import logits_function
from robustbench_gcp.evaluate import attack as attack_module
from robustbench_gcp.evaluate.attack import AttackEvalConfig, evaluate_attacks
from robustbench_gcp.rng import image_streams

# Where the natural ResNet-20 keeps some robust accuracy: L∞ 1/1020 and 1/510, L2 0.1.
SMALL_LINF = "0,1/1020,1/510"


@pytest.fixture(scope="module")
def photos(cifar_test_dir):
    return labelled_cifar(cifar_test_dir, 24)


@pytest.mark.parametrize("norm, radius", [("linf", 2 / 255), ("l2", 0.2)])
def test_every_attack_stays_in_the_ball_and_leaves_radius_zero_alone(resnet20, photos, norm, radius):
    images, labels = photos
    radii = torch.tensor([0.0, radius]).repeat_interleave(len(images))
    rows, row_labels = images.repeat(2, 1, 1, 1), labels.repeat(2)
    streams = image_streams(0, range(len(rows)), "test", 0)
    settings = AutoAttackSettings(norm=norm, steps=5, queries=20)
    logits = logits_function(resnet20, False)
    clean_correct = (resnet20(rows).argmax(1) == row_labels)
    for name in COMPONENTS:
        _, component = stages(name)[0]
        adversarial = run_component(component, logits, rows, row_labels, radii, streams, settings)
        delta = (adversarial - rows).flatten(1)
        size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
        assert (size <= radii + 1e-5).all(), name
        assert adversarial.min() >= 0 and adversarial.max() <= 1, name
        assert torch.equal(adversarial[: len(images)], images), name
        fooled = resnet20(adversarial).argmax(1) != row_labels
        assert not (fooled & clean_correct)[: len(images)].any(), name
        if name.startswith("apgd"):
            assert (fooled & clean_correct).any(), name  # the gradient attacks bite at 2/255 even in 5 steps


def _config(tmp_path: Path, resnet20_file, cifar_test_dir, **overrides) -> AttackEvalConfig:
    settings = dict(model="CIFAR10_ResNet20_GAP", checkpoint=resnet20_file, data=cifar_test_dir,
                    attacks=["autoattack"], eps=parse_epsilons(SMALL_LINF), steps=8, queries=40, limit=32, workers=0,
                    batch_size=64, db=tmp_path / "aa.sqlite")
    return AttackEvalConfig(**{**settings, **overrides})


def test_cascade_properties_batch_size_and_resume(tmp_path, cifar_test_dir, resnet20_file, monkeypatch):
    summary = evaluate_attacks(_config(tmp_path, resnet20_file, cifar_test_dir), progress=False)
    robust, clean = summary["robust_accuracy"], summary["clean_accuracy"]
    assert list(robust) == [name for name, _ in stages("autoattack")]
    for by_eps in robust.values():
        assert by_eps["0"] == clean
        values = list(by_eps.values())
        assert all(later <= earlier for earlier, later in zip(values, values[1:]))
    for eps in robust["autoattack/apgd-ce"]:  # each stage only removes robust points; the last is the worst case
        stage_values = [by_eps[eps] for by_eps in robust.values()]
        assert all(later <= earlier for earlier, later in zip(stage_values, stage_values[1:]))
        assert summary["worst_case"][eps] == stage_values[-1]
    assert robust["autoattack/apgd-ce"]["1/510"] < clean - 10  # the attack bites
    assert summary["report"] == []  # a plain pretrained ResNet raises no flag
    reference = stored_cells(tmp_path / "aa.sqlite")

    small = _config(tmp_path, resnet20_file, cifar_test_dir, batch_size=16, db=tmp_path / "small.sqlite")
    evaluate_attacks(small, progress=False)
    assert stored_cells(tmp_path / "small.sqlite") == reference  # per-sample flags do not depend on the batch size

    real_stage = attack_module._AttackRunner.autoattack_stage
    calls = []

    def killed_in_third_stage(self, cell, *args, **kwargs):
        calls.append(cell)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_stage(self, cell, *args, **kwargs)

    monkeypatch.setattr(attack_module._AttackRunner, "autoattack_stage", killed_in_third_stage)
    killed = _config(tmp_path, resnet20_file, cifar_test_dir, db=tmp_path / "killed.sqlite")
    with pytest.raises(KeyboardInterrupt):
        evaluate_attacks(killed, progress=False)
    assert {name for name, _ in stored_cells(tmp_path / "killed.sqlite")} == {"clean", "autoattack/apgd-ce",
                                                                      "autoattack/apgd-t"}
    monkeypatch.setattr(attack_module._AttackRunner, "autoattack_stage", real_stage)
    evaluate_attacks(killed, progress=False)
    assert stored_cells(tmp_path / "killed.sqlite") == reference


def test_top5_errors_of_a_cascade_are_cumulative(tmp_path, cifar_test_dir, resnet20_file):
    """Like top-1, a sample out of the top 5 after one stage stays counted in the later ones (at
    L2 0.1 APGD-CE pushes a photo out of the top 5; counting the image each stage classified last,
    the later stages fell back to the clean count)."""
    config = _config(tmp_path, resnet20_file, cifar_test_dir, eps=parse_epsilons("0,0.1"), norm="l2", steps=5,
                     queries=30, limit=40)
    evaluate_attacks(config, progress=False)
    cells = stored_cells(tmp_path / "aa.sqlite")
    for level in ("0", "0.1"):
        counts = [cells[name, level] for name, _ in stages("autoattack")]
        top5 = [top5_errors for _, _, top5_errors, _ in counts]
        assert top5 == sorted(top5) and all(top5_errors <= top1_errors for _, top1_errors, top5_errors, _ in counts)
    assert [cells[name, "0"][2] for name, _ in stages("autoattack")] == [cells["clean", "0"][2]] * 4
    assert cells["autoattack/square", "0.1"][2] > cells["clean", "0"][2]  # the stages pushed some out


class _Wrapper(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.architecture = model, model.architecture


class _Rounding(_Wrapper):
    """Masks gradients: the input is quantised to 8 bits with a step function (zero gradient)."""

    def forward(self, x):
        return self.model(torch.round(x * 255) / 255)


class _Softmax(_Wrapper):
    """Returns probabilities of large logits: the cross-entropy saturates."""

    def forward(self, x):
        return torch.softmax(self.model(x) * 100, dim=1)


class _Noisy(_Wrapper):
    """A randomised defence: Gaussian noise on the input at every pass."""

    def forward(self, x):
        return self.model(x + 0.02 * torch.randn_like(x))


@pytest.mark.parametrize("wrapper, expected", [(_Rounding, {"zero_gradients", "black_box_wins"}),
                                               (_Softmax, {"probabilities"})])
def test_report_flags_models_that_mask_gradients(tmp_path, cifar_test_dir, resnet20_file, monkeypatch, wrapper,
                                                 expected):
    real_load = attack_module.load_eval_model
    monkeypatch.setattr(attack_module, "load_eval_model", lambda *args: wrapper(real_load(*args)))
    config = _config(tmp_path, resnet20_file, cifar_test_dir, eps=parse_epsilons("0,2/255"), queries=200, limit=32)
    with pytest.warns(UserWarning):
        summary = evaluate_attacks(config, progress=False)
    flags = {flag["name"] for flag in summary["report"]}
    assert expected <= flags, summary["report"]
    assert all(flag["message"] for flag in summary["report"])


class _Confident(_Wrapper):
    """A plain model with huge logits: the cross-entropy's gradient underflows to 0 on the right images."""

    def forward(self, x):
        return self.model(x) * 1000


@pytest.mark.parametrize("wrapper, expected", [(None, set()), (_Confident, set()),
                                               (_Rounding, {"zero_gradients"})])
def test_gradient_check_sees_masking_not_confidence(resnet20, photos, wrapper, expected):
    """A plain model, however confident, raises no flag; a step function in front of it does."""
    images, labels = photos
    model = wrapper(resnet20) if wrapper else resnet20
    assert {flag.name for flag in attack_module.model_flags(model, images, labels)} == expected


def test_rand_version_on_a_randomised_model(tmp_path, cifar_test_dir, resnet20_file, monkeypatch):
    real_load = attack_module.load_eval_model
    monkeypatch.setattr(attack_module, "load_eval_model", lambda *args: _Noisy(real_load(*args)))
    config = _config(tmp_path, resnet20_file, cifar_test_dir, attacks=["autoattack-rand"],
                     eps=parse_epsilons("0,2/255"), steps=3, limit=16)
    with pytest.warns(UserWarning, match="randomized"):
        summary = evaluate_attacks(config, progress=False)
    assert list(summary["robust_accuracy"]) == ["autoattack-rand/apgd-ce", "autoattack-rand/apgd-dlr"]
    assert summary["worst_case"]["2/255"] < summary["clean_accuracy"] - 20  # EoT gradients still find the way
    assert {flag["name"] for flag in summary["report"]} >= {"randomized"}


def test_bad_autoattack_input(tmp_path, cifar_test_dir, resnet20_file):
    from conftest import run_cli_in_process

    base = ["eval-attack", "--model", "CIFAR10_ResNet20_GAP", "--checkpoint", str(resnet20_file), "--data",
            str(cifar_test_dir), "--eps", "0,1/255", "--limit", "8", "--workers", "0", "--quiet", "--db",
            str(tmp_path / "r.sqlite")]
    for extra, message in (
        (["--attacks", "autoattack", "--backend", "foolbox"], "no foolbox version"),
        (["--attacks", "autoattack", "--queries", "0"], "--queries 0"),
        (["--attacks", "apgd-ce,autoattack-fast"], "unknown attack 'autoattack-fast'"),
        (["--attacks", "square", "--norm", "l1"], "invalid choice: 'l1'"),
    ):
        result = run_cli_in_process(*base, *extra)
        assert result.returncode == 2 and message in result.stderr, (extra, result.stderr)
        assert "Traceback" not in result.stderr
    with pytest.raises(AutoAttackError, match="at least 10 classes"):
        from robustbench_gcp.attacks.autoattack import check_classes

        check_classes(stages("autoattack")[1][1], 5)


@pytest.mark.slow
@pytest.mark.parametrize("norm, eps", [("linf", "1/510"), ("l2", "0.1")])
def test_standard_version_agrees_with_the_reference(tmp_path, norm, eps):
    """eval-attack's native standard AutoAttack against ``--backend reference`` (pyautoattack) on
    the same 100 photos at equal settings, from the reference run's per-stage outcomes recorded in
    tests/baselines/references/: the same clean flags, and every stage's robust accuracy (the
    first is APGD-CE alone) and the worst case within 2 points. L∞ runs at the larger of the two
    recorded ε only (1/1020 leaves 57 % robust: most of the cost, stage after stage)."""
    theirs = recorded(f"pyautoattack-autoattack-{norm}")
    ours = eval_attack_outcomes(tmp_path / "aa.sqlite", tmp_path / "aa.json", *eval_attack_args(norm, eps))
    assert ours["clean_accuracy"] == theirs["clean_accuracy"]
    assert ours["flags"]["clean/0"] == theirs["flags"]["clean/0"]
    assert set(ours["flags"]) == {"clean/0", *(f"{stage}/{eps}" for stage in theirs["robust_accuracy"])}
    print(norm, "native", ours["robust_accuracy"], "reference", theirs["robust_accuracy"], file=sys.stderr)
    for stage, by_eps in ours["robust_accuracy"].items():
        for level, value in by_eps.items():
            assert abs(value - theirs["robust_accuracy"][stage][level]) <= 2.0, (stage, level, value, theirs)
    for level, value in ours["worst_case"].items():
        assert abs(value - theirs["worst_case"][level]) <= 2.0, (level, value, theirs["worst_case"])
        assert 0 < theirs["worst_case"][level] < theirs["clean_accuracy"]  # an ε where robustness is partial
