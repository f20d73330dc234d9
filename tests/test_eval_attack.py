"""`gcp-robust eval-attack` with the pretrained CIFAR ResNet-20 on real CIFAR-10 photos."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

pytest.importorskip("foolbox", reason="attacks need foolbox")

from conftest import labelled_cifar, stored_cells  # noqa: E402
from references import PGD, PGD_SETTINGS, flags_of, recorded  # noqa: E402

from robustbench_gcp.attacks import AttackError, AttackSettings, parse_epsilons, run_attack  # noqa: E402
from robustbench_gcp.evaluate.attack import AttackEvalConfig, evaluate_attacks  # noqa: E402
from robustbench_gcp.rng import image_streams


@pytest.fixture(scope="module")
def photos(cifar_test_dir):
    return labelled_cifar(cifar_test_dir, 200)


def native_pgd_against_foolbox(model, images, labels, name):
    """Native PGD at foolbox's settings, with its robust accuracy per ε within 1 point of foolbox's
    recorded one (tests/baselines/references/); returns the adversarial images and the last
    robust accuracy and the clean flags."""
    eps = PGD[name]
    theirs = recorded(f"foolbox-{name}")["robust"]
    streams = image_streams(0, range(len(images) * len(eps)), name, 0)
    ours = run_attack(name, model, images, labels, eps, AttackSettings(backend="native", **PGD_SETTINGS), streams)
    with torch.no_grad():
        clean = model(images).argmax(1) == labels
        for k in range(len(eps)):
            robust_theirs = flags_of(theirs[repr(eps[k])]).float().mean() * 100
            robust_ours = ((model(ours[k]).argmax(1) == labels) & clean).float().mean() * 100
            assert abs(robust_ours - robust_theirs) <= 1.0, (name, eps[k], float(robust_ours), float(robust_theirs))
    return ours, robust_ours, clean


@pytest.mark.parametrize("name", ["linf-pgd", "l2-pgd"])
def test_native_pgd_agrees_with_foolbox(resnet20, photos, name):
    images, labels = photos
    eps = PGD[name]
    ours, robust_ours, clean = native_pgd_against_foolbox(resnet20, images, labels, name)
    assert robust_ours < clean.float().mean() * 100 - 5  # the attack bites
    perturbation = (ours - images).flatten(2)
    bound = perturbation.abs().amax(-1) if name == "linf-pgd" else perturbation.norm(dim=-1)
    assert (bound <= torch.tensor(eps)[:, None] + 1e-5).all() and ours.min() >= 0 and ours.max() <= 1


def test_run_properties_resume_and_json(tmp_path, cifar_test_dir, resnet20_file):
    common = dict(model="CIFAR10_ResNet20_GAP", checkpoint=resnet20_file, data=cifar_test_dir,
                  eps=parse_epsilons("0,1/255,4/255"), steps=5, rel_stepsize=0.5, limit=100, workers=0, batch_size=50)
    first = AttackEvalConfig(attacks=["linf-pgd"], db=tmp_path / "resumed.sqlite", **common)
    evaluate_attacks(first, progress=False)
    resumed = AttackEvalConfig(attacks=["linf-pgd", "fgsm"], db=tmp_path / "resumed.sqlite",
                               json=tmp_path / "a.json", **{**common, "batch_size": 30})
    summary = evaluate_attacks(resumed, progress=False)
    once = AttackEvalConfig(attacks=["linf-pgd", "fgsm"], db=tmp_path / "once.sqlite", **common)
    evaluate_attacks(once, progress=False)
    assert stored_cells(tmp_path / "resumed.sqlite") == stored_cells(tmp_path / "once.sqlite")

    assert set(summary) == {"model", "checkpoint_sha256", "dataset", "n", "clean_accuracy", "robust_accuracy",
                            "worst_case", "skipped_unreadable", "run_id", "asked", "clean_accuracy_ci",
                            "robust_accuracy_ci", "worst_case_ci", "report"}
    assert summary["report"] == []
    for attack, by_eps in summary["robust_accuracy_ci"].items():
        for eps, (low, high) in by_eps.items():
            assert low <= summary["robust_accuracy"][attack][eps] <= high
    robust, worst = summary["robust_accuracy"], summary["worst_case"]
    assert summary["n"] == 100 and list(robust["linf-pgd"]) == ["0", "1/255", "4/255"]
    for by_eps in robust.values():
        assert by_eps["0"] == summary["clean_accuracy"]
        values = list(by_eps.values())
        assert all(later <= earlier for earlier, later in zip(values, values[1:]))
    for eps, value in worst.items():
        assert value <= min(by_eps[eps] for by_eps in robust.values())
    evaluate_attacks(resumed, progress=False)
    first_bytes = (tmp_path / "a.json").read_bytes()
    evaluate_attacks(resumed, progress=False)
    assert (tmp_path / "a.json").read_bytes() == first_bytes


def test_eps_parsing_and_bad_input(tmp_path, cifar_test_dir):
    assert parse_epsilons("0, 1/255,0.5") == [("0", 0.0), ("1/255", 1 / 255), ("0.5", 0.5)]
    with pytest.raises(AttackError, match=r"outside \[0, 1\]"):
        parse_epsilons("0,8")
    base = [sys.executable, "-m", "robustbench_gcp.cli", "eval-attack", "--data", str(cifar_test_dir),
            "--db", str(tmp_path / "r.sqlite"), "--limit", "10", "--workers", "0", "--quiet"]
    for extra, message in (
        (["--model", "cifar_resnet20_gap", "--attacks", "pgd", "--eps", "0.1"], "unknown attack 'pgd'"),
        (["--model", "cifar_resnet20_gap", "--eps", "2"], "outside [0, 1]"),
        (["--model", "resnet18_gap", "--eps", "0.1"], "has 10 classes but resnet18_gap outputs 1000"),
    ):
        result = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=300)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_cli_table_and_plot(tmp_path, cifar_test_dir, resnet20_file):
    db = tmp_path / "r.sqlite"
    run = subprocess.run(
        [sys.executable, "-m", "robustbench_gcp.cli", "eval-attack", "--model", "CIFAR10_ResNet20_GAP",
         "--checkpoint", str(resnet20_file), "--data", str(cifar_test_dir), "--attacks", "linf-pgd",
         "--eps", "0,2/255", "--steps", "3", "--limit", "40", "--workers", "0", "--quiet", "--db", str(db),
         "--json", str(tmp_path / "s.json")], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "linf-pgd (robust accuracy %)" in run.stdout and "eps 2/255" in run.stdout
    assert "worst case over attacks" not in run.stdout  # one attack: its own block is the worst case
    assert json.loads((tmp_path / "s.json").read_text())["n"] == 40
    plot = subprocess.run([sys.executable, "-m", "robustbench_gcp.cli", "plot", "--kind", "attack", "--db", str(db),
                           "--out", str(tmp_path / "attack.png")], capture_output=True, text=True, timeout=300)
    assert plot.returncode == 0 and (tmp_path / "attack.png").stat().st_size > 5_000


@pytest.mark.parametrize("name, eps", [("linf-pgd", [1 / 255, 4 / 255]), ("l2-pgd", [0.1, 0.5])])
def test_foolbox_pgd_starts_where_native_pgd_does(resnet20, photos, name, eps):
    images, labels = photos[0][:16], photos[1][:16]
    streams = image_streams(0, range(len(images) * len(eps)), name, 0)
    starts = [run_attack(name, resnet20, images, labels, eps, AttackSettings(steps=0, backend=backend), streams)
              for backend in ("foolbox", "native")]
    assert torch.allclose(*starts, atol=1e-6)


@pytest.mark.parametrize("attack", ["linf-pgd", "l2-pgd"])
def test_foolbox_cells_do_not_depend_on_the_batch_size(tmp_path, cifar_test_dir, resnet20_file, attack):
    common = dict(model="CIFAR10_ResNet20_GAP", checkpoint=resnet20_file, data=cifar_test_dir,
                  attacks=[attack], eps=parse_epsilons("0,1/255,4/255"), steps=2, restarts=2,
                  backend="foolbox", limit=50, workers=0)
    for batch_size in (16, 50):
        evaluate_attacks(AttackEvalConfig(**common, batch_size=batch_size, db=tmp_path / f"{batch_size}.sqlite"),
                         progress=False)
    assert stored_cells(tmp_path / "16.sqlite") == stored_cells(tmp_path / "50.sqlite")


@pytest.mark.slow  # whole CLI processes, over a minute: CI runs it, plain `tox` leaves it to `tox -e slow`
def test_two_gloo_processes_count_like_one(tmp_path, cifar_test_dir, resnet20_file):
    import os

    args = ["-m", "robustbench_gcp.cli", "eval-attack", "--model", "CIFAR10_ResNet20_GAP", "--checkpoint",
            str(resnet20_file), "--data", str(cifar_test_dir), "--attacks", "linf-pgd,fgsm", "--eps", "0,2/255,4/255",
            "--steps", "3", "--limit", "60", "--batch-size", "16", "--workers", "0", "--device", "cpu", "--quiet"]
    single = subprocess.run([sys.executable, *args, "--db", str(tmp_path / "one.sqlite")], capture_output=True,
                            text=True, timeout=600)
    assert single.returncode == 0, single.stderr
    double = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                             "29535", *args, "--db", str(tmp_path / "two.sqlite")], capture_output=True, text=True,
                            timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert double.returncode == 0, double.stderr[-3000:]
    assert stored_cells(tmp_path / "two.sqlite") == stored_cells(tmp_path / "one.sqlite")
