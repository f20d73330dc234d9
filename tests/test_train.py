"""Training: the paper's LR formulas, a short real run, resume, torchrun, and the demo."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robustbench_gcp.data.builtin import PHOTOS, write_builtin
from robustbench_gcp.models import read_checkpoint
from robustbench_gcp.train import TrainConfig, lr_at, recipe, train


def test_lr_formulas():
    assert lr_at("resnet50_gcp", "LRfast", 0) == pytest.approx(0.1 * (1 + 1 / 52) ** 11)
    assert lr_at("resnet50_gcp", "LRfast", 0) > 0.1
    assert lr_at("resnet18_gap", "LRadju", 30) == pytest.approx(0.1 * (1 - 29 / 49) ** 2)
    assert lr_at("resnet101_gcp", "LRnorm", 59) == pytest.approx(0.01) and lr_at("resnet101_gcp", "LRnorm", 60) == \
        pytest.approx(0.001)
    assert lr_at("cifar_resnet20_gcp", "LRfast", 10) == pytest.approx(0.1 * (1 - 9 / 52) ** 11)
    assert lr_at("mobilenet_v2_gcp", "LRnorm", 10) == pytest.approx(0.045 * 0.98**10)
    assert lr_at("mobilenet_v2_gap", "LRfast", 3) == pytest.approx(0.06 * 0.92**3)
    assert lr_at("MobileNetV2_GCP_LRadju", "LRadju", 25) == pytest.approx(0.035)
    assert lr_at("mobilenet_v2_gcp", "LRadju", 75) == pytest.approx(0.0055)
    assert lr_at("mobilenet_v2_gcp", "LRadju", 200) == pytest.approx(1e-5)
    assert lr_at("shufflenet_v2_x1_0_gcp", "LRfast", 30, iteration=50, iters_per_epoch=100) == \
        pytest.approx(0.5 * (1 - 30.5 / 60))
    assert lr_at("resnet50_gcp", "cosine", 50, epochs=100) == pytest.approx(0.05)
    assert recipe("mobilenet_v2_gcp", "LRadju").batch_size == 192
    assert (recipe("shufflenet_v2_x1_0_gap", "LRnorm").epochs, recipe("resnet34_gcp", "LRadju").epochs) == (240, 50)
    # a shorter run stretches the schedule: epoch 15 of 30 equals epoch 5 of 10
    assert lr_at("resnet50_gcp", "LRfast", 5, epochs=10) == pytest.approx(lr_at("resnet50_gcp", "LRfast", 15))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    pytest.importorskip("skimage")
    return write_builtin(tmp_path_factory.mktemp("builtin"), train_per_class=40, test_per_class=10)


def test_builtin_set_is_deterministic(tiny_data, tmp_path):
    again = write_builtin(tmp_path / "again", train_per_class=40, test_per_class=10)
    first = sorted((tiny_data / "val").rglob("*.png"))
    assert len(first) == 10 * len(PHOTOS)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in sorted((again / "val").rglob("*.png"))]


def test_short_run_learns_resumes_and_feeds_eval(tiny_data, tmp_path):
    common = dict(model="cifar_resnet20_gap", data=str(tiny_data), lr_mode="LRfast", batch_size=32, workers=0,
                  lr=0.05)
    history = train(TrainConfig(epochs=2, out=tmp_path / "run", **common), progress=False)
    assert [h["epoch"] for h in history] == [0, 1] and history[1]["loss"] < history[0]["loss"]
    checkpoint = tmp_path / "run" / "checkpoint.pth.tar"
    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert payload["epoch"] == 2 and payload["arch"] == "cifar_resnet20_gap"
    assert all(key.startswith("module.") for key in payload["state_dict"]) and "optimizer" in payload
    saved_momentum = payload["optimizer"]["state"][0]["momentum_buffer"].clone()

    from robustbench_gcp.train.loop import Trainer

    resumed = Trainer(TrainConfig(epochs=3, out=tmp_path / "run", resume=checkpoint, **common))
    assert resumed.start_epoch == 2
    assert torch.equal(resumed.optimizer.state_dict()["state"][0]["momentum_buffer"], saved_momentum)
    history = resumed.run(progress=False)
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 3

    result = subprocess.run(
        [sys.executable, "-m", "robustbench_gcp.cli", "eval-corruption", "--model", "cifar_resnet20_gap",
         "--checkpoint", str(checkpoint), "--num-classes", str(len(PHOTOS)), "--data", str(tiny_data / "val"),
         "--protocol", "cifar10-c", "--corruptions", "fog", "--severities", "1", "--workers", "0", "--quiet",
         "--db", str(tmp_path / "r.sqlite")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    state, _ = read_checkpoint(checkpoint)
    assert state["linear.weight"].shape == (len(PHOTOS), 64)


@pytest.mark.slow  # whole CLI processes, over a minute: CI runs it, plain `tox` leaves it to `tox -e slow`
def test_two_gloo_processes_train(tiny_data, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
         "-m", "robustbench_gcp.cli", "train", "--model", "cifar_resnet20_gcp", "--data", str(tiny_data),
         "--lr-mode", "LRadju", "--epochs", "1", "--batch-size", "32", "--workers", "0", "--device", "cpu",
         "--quiet", "--out", str(tmp_path / "ddp")], capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    log = [json.loads(line) for line in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and log[0]["loss"] > 0
    assert (tmp_path / "ddp" / "model_best.pth.tar").exists() or log[0]["val_top1"] == 0


@pytest.mark.slow  # whole CLI processes, over a minute: CI runs it, plain `tox` leaves it to `tox -e slow`
def test_demo_runs_end_to_end(tmp_path):
    pytest.importorskip("skimage")
    result = subprocess.run([sys.executable, "-m", "robustbench_gcp.cli", "demo", "--quick", "--out",
                             str(tmp_path / "demo")], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cifar_resnet20_gap" in result.stdout and "linf-pgd (robust accuracy %)" in result.stdout
    assert "== training GAP ResNet-20 (1/8)" in result.stdout and "left" in result.stdout
    assert "gaussian_noise FP d=1 (%)" in result.stdout  # the CIFAR-10-P flip probabilities of both models
    for model in ("cifar_resnet20_gap", "cifar_resnet20_gcp"):
        flips = json.loads((tmp_path / "demo" / f"{model}-perturbations.json").read_text())["flip_probability"]
        assert len(flips) == 10 and all(list(by) == ["1"] and 0 <= by["1"] <= 1 for by in flips.values())
    # no ImageNet-normalised numbers on the built-in photos, and a log without carriage returns
    assert "(CE)" not in result.stdout and "mCE" not in result.stdout and "mean error (%)" in result.stdout
    assert "\r" not in result.stdout + result.stderr and "eval-corruption: " in result.stderr
    assert "warning" not in result.stderr  # no report flag for the plain models, no other warning
    # the reported models are the final checkpoints, not the best-validation ones
    summary = json.loads((tmp_path / "demo" / "cifar_resnet20_gap-corruptions.json").read_text())
    checkpoint = tmp_path / "demo" / "train" / "cifar_resnet20_gap" / "checkpoint.pth.tar"

    assert summary["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    for name in ("results.sqlite", "errors_vs_severity.png", "robust_accuracy_vs_eps.png", "learning_curves.png",
                 "flip_probability.png"):
        assert (tmp_path / "demo" / name).stat().st_size > 1000, name
