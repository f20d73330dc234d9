"""The `gcp-robust` command, run as a user runs it: a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "robustbench_gcp.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_models_json_lists_architectures_and_checkpoints():
    result = run_cli("models", "--format", "json")
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)
    by_name = {e["name"]: e for e in entries}
    assert {"name", "kind", "architecture", "head", "params"} <= set(entries[0])
    assert by_name["resnet50_gcp"]["kind"] == "architecture"
    assert round(by_name["resnet50_gcp"]["params"] / 1e6, 2) == 56.93
    record = by_name["ResNet50_GCP_LRnorm"]
    assert (record["kind"], record["architecture"], record["lr_mode"], record["top1"], record["top5"]) == (
        "checkpoint", "resnet50_gcp", "LRnorm", 78.56, 94.09)
    assert sum(e["kind"] == "checkpoint" for e in entries) == 44


def test_models_pattern_filters_the_table():
    result = run_cli("models", "--pattern", "mobilenet*gcp*")
    assert result.returncode == 0, result.stderr
    assert "MobileNetV2_GCP_LRadju_128" in result.stdout and "resnet" not in result.stdout.lower()
    empty = run_cli("models", "--pattern", "nothing-like-this")
    assert empty.returncode == 2 and "no model or checkpoint matches" in empty.stderr


def test_checkpoint_identifies_and_loads_a_real_file(resnet20_file):
    result = run_cli("checkpoint", str(resnet20_file), "--model", "CIFAR10_ResNet20_GAP")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["likely_architecture"] == "cifar_resnet20_gap" and summary["layout_match"] == 1.0
    assert summary["loaded_into"] == "cifar_resnet20_gap" and summary["params"] == 269_722


def test_missing_checkpoint_is_one_readable_line(tmp_path):
    result = run_cli("checkpoint", str(tmp_path / "ResNet50_GCP_LRnorm.pth.tar"), "--model", "resnet50_gcp")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "no such file" in result.stderr


def test_checkpoint_of_another_architecture_is_a_readable_error(resnet44_file):
    result = run_cli("checkpoint", str(resnet44_file), "--model", "cifar_resnet20_gap")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "does not fit architecture 'cifar_resnet20_gap'" in result.stderr
    assert "use --model cifar_resnet44_gap" in result.stderr


def test_unknown_model_is_a_readable_error(resnet20_file):
    result = run_cli("checkpoint", str(resnet20_file), "--model", "resnet50_gpc")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown architecture 'resnet50_gpc'" in result.stderr
