"""A small results store of every kind of run, for the report's tests: the pretrained CIFAR ResNet-20
(a seed checkpoint) and its GCP twin with random weights under corruptions and AutoAttack, and the
ResNet-20 under perturbation sequences."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli_in_process, shared_path


def build_store(folder: Path) -> Path:
    db = folder / "report.sqlite"
    resnet20 = str(shared_path("cifar10_resnet_akamaster/resnet20-12fca82f.th"))
    common = ["--data", str(shared_path("cifar10_test_jpg/test")), "--db", str(db), "--quiet", "--workers", "0"]
    commands = []
    for model in (["--model", "CIFAR10_ResNet20_GAP", "--checkpoint", resnet20], ["--model", "cifar_resnet20_gcp"]):
        commands += [
            ["eval-corruption", *model, *common, "--protocol", "cifar10-c", "--corruptions", "gaussian_noise,contrast",
             "--limit", "40"],
            ["eval-attack", *model, *common, "--attacks", "autoattack", "--eps", "0,1/255,2/255", "--limit", "8",
             "--steps", "2", "--queries", "10"],
        ]
    commands.append(["eval-perturbation", "--model", "CIFAR10_ResNet20_GAP", "--checkpoint", resnet20, *common,
                     "--protocol", "cifar10-p", "--perturbations", "gaussian_noise,rotate", "--limit", "4"])
    for command in commands:
        result = run_cli_in_process(*command)
        assert result.returncode == 0, result.stderr
    return db


def table_json(db: Path, *options: str) -> dict:
    """What `table --format json` prints for the store."""
    result = run_cli_in_process("table", "--db", str(db), "--format", "json", *options)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def resolve(data: dict, path: list):
    """The value at ``path`` (keys and list indices) of the record."""
    for step in path:
        data = data[step]
    return data
