"""Hints that point the right way: a mistyped name gets the names it was probably meant as, an
L∞ budget over 1 gets k/255, and --data one level above the class folders gets the level below."""

from __future__ import annotations

import pytest
from conftest import run_cli_in_process, shared_path


def _hint(result, *phrases: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0])


@pytest.mark.parametrize("model, meant", [
    ("resnet20", "cifar_resnet20_gap"),
    ("CIFAR10_ResNet20", "CIFAR10_ResNet20_GAP"),
    ("ResNet50_GCP_LRnrom", "ResNet50_GCP_LRnorm"),
])
def test_a_mistyped_model_gets_what_it_was_meant_as(tmp_path, model, meant):
    result = run_cli_in_process("eval-corruption", "--model", model, "--data", str(tmp_path), "--db",
                                str(tmp_path / "r.sqlite"))
    _hint(result, f"unknown architecture {model!r}", "did you mean", meant)


@pytest.mark.parametrize("option, value, meant", [
    ("--corruptions", "gausian_noise", "gaussian_noise"),
    ("--attacks", "linf-pdg", "linf-pgd"),
    ("--perturbations", "rotation", "rotate"),
])
def test_a_mistyped_name_gets_a_suggestion(tmp_path, option, value, meant):
    command = {"--corruptions": "eval-corruption", "--attacks": "eval-attack",
               "--perturbations": "eval-perturbation"}[option]
    extra = ["--eps", "1/255"] if command == "eval-attack" else []
    result = run_cli_in_process(command, "--model", "CIFAR10_ResNet20_GAP", "--data", str(tmp_path), option, value,
                                *extra)
    _hint(result, f"did you mean {meant}")


def test_an_linf_budget_over_one_gets_k_over_255(tmp_path):
    result = run_cli_in_process("eval-attack", "--model", "CIFAR10_ResNet20_GAP", "--data", str(tmp_path),
                                "--attacks", "linf-pgd", "--eps", "0,8")
    _hint(result, "--eps 8", "did you mean 8/255?")


def test_data_one_level_above_the_class_folders_gets_the_level_below(tmp_path):
    result = run_cli_in_process("eval-corruption", "--model", "CIFAR10_ResNet20_GAP", "--checkpoint",
                                str(shared_path("cifar10_resnet_akamaster/resnet20-12fca82f.th")), "--data",
                                str(shared_path("cifar10_test_jpg")), "--limit", "10", "--db",
                                str(tmp_path / "r.sqlite"))
    _hint(result, "has 1 class folder but CIFAR10_ResNet20_GAP outputs 10 classes",
          f"did you mean --data {shared_path('cifar10_test_jpg/test')}?")
    assert not (tmp_path / "r.sqlite").exists()


def test_kinds_get_their_article(tmp_path):
    corruption, attack = tmp_path / "c.json", tmp_path / "a.json"
    corruption.write_text('{"errors": {}}')
    attack.write_text('{"robust_accuracy": {}}')
    _hint(run_cli_in_process("compare", str(corruption), str(attack)),
          f"{corruption} is a corruption summary but {attack} is an attack summary")
