"""What a new user meets in the first hour: a PGD that means what it says, defaults that fit the
data, runs that can be told apart and selected, and output that survives pipes and parsers."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli_in_process as cli

from robustbench_gcp.attacks import AttackSettings, attack_spec, parse_epsilons
from robustbench_gcp.evaluate.attack import AttackEvalConfig, evaluate_attacks


def test_steps_without_rel_stepsize_can_cross_the_eps_ball():
    assert AttackSettings(steps=10).rel_stepsize_of(attack_spec("linf-pgd")) == pytest.approx(0.25)
    assert AttackSettings(steps=50).rel_stepsize_of(attack_spec("l2-pgd")) == pytest.approx(0.05)
    assert AttackSettings().rel_stepsize_of(attack_spec("linf-pgd")) == pytest.approx(0.01 / 0.3)  # foolbox's
    assert AttackSettings(steps=10, rel_stepsize=0.01).short_reach(attack_spec("linf-pgd")) == pytest.approx(0.1)


def test_pgd10_is_at_least_as_strong_as_fgsm(tmp_path, cifar_test_dir, resnet20_file):
    summary = evaluate_attacks(AttackEvalConfig(
        model="CIFAR10_ResNet20_GAP", checkpoint=resnet20_file, data=cifar_test_dir, attacks=["fgsm", "linf-pgd"],
        eps=parse_epsilons("1/255"), steps=10, limit=200, workers=0, batch_size=100, db=tmp_path / "r.sqlite"),
        progress=False)
    robust = summary["robust_accuracy"]
    assert robust["linf-pgd"]["1/255"] <= robust["fgsm"]["1/255"], robust


def test_a_short_explicit_step_gets_a_warning(tmp_path, cifar_test_dir, resnet20_file):
    with pytest.warns(UserWarning, match="travels at most 0.10 ε"):
        evaluate_attacks(AttackEvalConfig(
            model="CIFAR10_ResNet20_GAP", checkpoint=resnet20_file, data=cifar_test_dir, attacks=["linf-pgd"],
            eps=parse_epsilons("1/255"), steps=1, rel_stepsize=0.1, limit=10, workers=0, db=tmp_path / "r.sqlite"),
            progress=False)


@pytest.fixture
def two_runs(tmp_path, cifar_test_dir, resnet20_file) -> Path:
    """A CIFAR record without --protocol (cifar10-c chosen), then with another protocol and limit."""
    db = tmp_path / "r.sqlite"
    base = ["eval-corruption", "--model", "CIFAR10_ResNet20_GAP", "--checkpoint", str(resnet20_file), "--data",
            str(cifar_test_dir), "--corruptions", "contrast", "--severities", "1", "--workers", "0", "--quiet",
            "--db", str(db)]
    first = cli(*base, "--limit", "30")
    assert first.returncode == 0, first.stderr
    assert "CIFAR10_ResNet20_GAP · cifar10-c · n=30" in first.stdout
    second = cli(*base, "--limit", "20", "--protocol", "imagecorruptions", "--name", "ic-20")
    assert second.returncode == 0, second.stderr
    assert "ic-20" in second.stdout and "n=30" not in second.stdout  # eval prints its own run only
    return db


def test_runs_are_named_selected_and_deleted(two_runs):
    db = str(two_runs)
    table = cli("table", "--db", db)
    assert table.returncode == 0, table.stderr
    assert "CIFAR10_ResNet20_GAP · cifar10-c · n=30" in table.stdout and "ic-20" in table.stdout
    one = cli("table", "--db", db, "--run", "ic-20")
    assert "ic-20" in one.stdout and "n=30" not in one.stdout
    latest = cli("table", "--db", db, "--latest")
    assert "ic-20" in latest.stdout and "n=30" not in latest.stdout
    listing = cli("runs", "--db", db)
    assert listing.returncode == 0 and "| ic-20" in listing.stdout and "cifar10-c · n=30" in listing.stdout
    stored = cli("compare", "--db", db, "--run", "1", "--run", "ic-20")
    assert stored.returncode in (0, 1), stored.stderr
    assert "baseline: run 1" in stored.stdout and "current: run 2 (ic-20)" in stored.stdout
    deleted = cli("runs", "--db", db, "--delete", "1")
    assert deleted.returncode == 0 and "deleted run 1" in deleted.stdout and "2 cells" in deleted.stdout
    after = cli("runs", "--db", db)
    assert "n=30" not in after.stdout and "ic-20" in after.stdout
    import sqlite3

    with sqlite3.connect(two_runs) as connection:
        assert connection.execute("SELECT COUNT(*) FROM cells WHERE run_id = 1").fetchone()[0] == 0


def test_refused_configuration_leaves_the_store_unchanged(two_runs, cifar_test_dir, resnet20_file):
    before = two_runs.read_bytes()
    refused = cli("eval-corruption", "--model", "CIFAR10_ResNet20_GAP", "--checkpoint", str(resnet20_file),
                  "--data", str(cifar_test_dir), "--protocol", "imagenet-c", "--workers", "0", "--db", str(two_runs))
    assert refused.returncode == 2 and "pass --protocol cifar10-c" in refused.stderr
    assert two_runs.read_bytes() == before


def test_csv_parses_and_a_closed_pipe_is_quiet(two_runs):
    table = cli("table", "--db", str(two_runs), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(table.stdout)))
    assert {row["metric"] for row in rows} >= {"clean_error", "contrast", "mean_error"}
    assert {row["label"] for row in rows} == {"CIFAR10_ResNet20_GAP · cifar10-c · n=30", "ic-20"}
    piped = subprocess.run(f"{sys.executable} -m robustbench_gcp.cli table --db {two_runs} | head -1", shell=True,
                           capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and "Traceback" not in piped.stderr and piped.stderr == ""


def test_models_and_checkpoint_say_which_file_is_which(resnet20_file):
    models = cli("models", "--pattern", "CIFAR10*")
    assert "filename" in models.stdout and "resnet20-12fca82f.th" in models.stdout
    import json

    checkpoint = json.loads(cli("checkpoint", str(resnet20_file)).stdout)
    assert checkpoint["record"] == "CIFAR10_ResNet20_GAP" and checkpoint["sha256_matches_record"] is True
    assert checkpoint["best_acc1_in_file"] == pytest.approx(91.78, abs=0.01)
