"""Runs that used to report silently wrong numbers: each of these failed before its fix."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import copy_per_class

from robustbench_gcp.attacks import parse_epsilons
from robustbench_gcp.data.batches import UnreadableImages
from robustbench_gcp.evaluate.attack import AttackEvalConfig, evaluate_attacks
from robustbench_gcp.evaluate.common import EvaluationError
from robustbench_gcp.evaluate.corruption import CorruptionEvalConfig, evaluate_corruptions
from robustbench_gcp.export import ExportConfig, export_corrupted_folder
from robustbench_gcp.results import ResultStore
from robustbench_gcp.rng import image_streams


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robustbench_gcp.cli", *args], capture_output=True, text=True,
                          timeout=600)


def attack_cells(db: Path) -> dict:
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT name, level, n, top1_errors, mask FROM cells WHERE name != 'clean'")
        return {(name, level): rest for name, level, *rest in rows}


def test_class_index_is_part_of_the_run(tmp_path, cifar_test_dir, resnet20_file):
    """A rerun with another --class-index must not reuse the cells of the first mapping."""
    common = dict(model="CIFAR10_ResNet20_GAP", checkpoint=resnet20_file, data=cifar_test_dir, limit=100,
                  corruptions=["contrast"], severities=[1], workers=0, db=tmp_path / "r.sqlite")
    plain = evaluate_corruptions(CorruptionEvalConfig(**common), progress=False)
    folders = sorted(p.name for p in cifar_test_dir.iterdir())
    shifted = tmp_path / "synset_words.txt"  # every folder mapped to the next class
    shifted.write_text("".join(f"{folders[(i + 1) % 10]} shifted\n" for i in range(10)))
    remapped = evaluate_corruptions(CorruptionEvalConfig(**common, class_index=shifted), progress=False)
    assert plain["clean_error"] < 30 and remapped["clean_error"] > 80, (plain["clean_error"], remapped["clean_error"])
    assert len(ResultStore(tmp_path / "r.sqlite").runs()) == 2


def test_data_changed_in_place_is_a_new_run(tmp_path, cifar_test_dir, resnet20_file):
    data = copy_per_class(cifar_test_dir, tmp_path / "data", 3)
    config = CorruptionEvalConfig(model="CIFAR10_ResNet20_GAP", checkpoint=resnet20_file, data=data,
                                  corruptions=["contrast"], severities=[1], workers=0, db=tmp_path / "r.sqlite")
    evaluate_corruptions(config, progress=False)
    evaluate_corruptions(config, progress=False)
    assert len(ResultStore(config.db).runs()) == 1  # unchanged data: the run resumes
    victim = next((data / "cat").glob("*.jpg"))
    victim.write_bytes((next((data / "dog").glob("*.jpg"))).read_bytes())
    with pytest.warns(UserWarning, match="changed since run 1"):
        evaluate_corruptions(config, progress=False)
    assert len(ResultStore(config.db).runs()) == 2


def test_cifar10c_severities_are_validated(tmp_path, resnet20_file):
    n = 20
    rng = np.random.default_rng(0)
    np.save(tmp_path / "labels.npy", np.tile(np.arange(10), 5 * n // 10).astype(np.uint8))
    np.save(tmp_path / "contrast.npy", rng.integers(0, 256, (5 * n, 32, 32, 3), dtype=np.uint8))
    common = dict(model="CIFAR10_ResNet20_GAP", checkpoint=resnet20_file, data=tmp_path, source="cifar10-c",
                  corruptions=["contrast"], workers=0, db=tmp_path / "r.sqlite")
    for bad in (0, -4, 6):
        with pytest.raises(EvaluationError, match="severities are 1 to 5"):
            evaluate_corruptions(CorruptionEvalConfig(**common, severities=[bad]), progress=False)
    assert not (tmp_path / "r.sqlite").exists()
    summary = evaluate_corruptions(CorruptionEvalConfig(**common, severities=[5]), progress=False)
    assert summary["n"] == n and summary["errors"]["contrast"][4] is not None


def test_a_pgd_cell_does_not_depend_on_the_other_eps_of_the_sweep(tmp_path, cifar_test_dir, resnet20_file):
    common = dict(model="CIFAR10_ResNet20_GAP", checkpoint=resnet20_file, data=cifar_test_dir, attacks=["linf-pgd"],
                  steps=2, rel_stepsize=0.5, limit=60, workers=0, batch_size=25)
    alone = tmp_path / "alone.sqlite"
    evaluate_attacks(AttackEvalConfig(eps=parse_epsilons("2/255"), db=alone, **common), progress=False)
    sweep = tmp_path / "sweep.sqlite"
    evaluate_attacks(AttackEvalConfig(eps=parse_epsilons("1/255,2/255"), db=sweep, **common), progress=False)
    extended = tmp_path / "extended.sqlite"
    evaluate_attacks(AttackEvalConfig(eps=parse_epsilons("4/255,1/255"), db=extended, **common), progress=False)
    evaluate_attacks(AttackEvalConfig(eps=parse_epsilons("1/255,2/255,4/255"), db=extended, **common),
                     progress=False)
    assert attack_cells(alone)["linf-pgd", "2/255"] == attack_cells(sweep)["linf-pgd", "2/255"]
    assert attack_cells(sweep)["linf-pgd", "1/255"] == attack_cells(extended)["linf-pgd", "1/255"]
    assert attack_cells(alone)["linf-pgd", "2/255"] == attack_cells(extended)["linf-pgd", "2/255"]


def test_zero_steps_means_no_step(resnet20_file, cifar_photos):
    """--steps 0 is the random start alone, recorded as 0: not the default 40 steps."""
    import robustbench_gcp as rg
    from robustbench_gcp.attacks import AttackSettings, run_attack

    model = rg.create_model("CIFAR10_ResNet20_GAP", checkpoint=resnet20_file)
    images, labels = cifar_photos, torch.arange(10).repeat_interleave(4)
    eps = [4 / 255]

    def robust(steps: int) -> float:
        streams = image_streams(0, range(len(images)), "linf-pgd", 0)
        adversarial = run_attack("linf-pgd", model, images, labels, eps, AttackSettings(steps=steps), streams)[0]
        assert (adversarial - images).abs().max() <= eps[0] + 1e-6
        with torch.no_grad():
            return float((model(adversarial).argmax(1) == labels).float().mean())

    with torch.no_grad():
        clean = float((model(images).argmax(1) == labels).float().mean())
    assert robust(0) >= clean - 0.1 and robust(0) > robust(40) + 0.2


def test_corrupt_never_writes_two_inputs_to_one_file(tmp_path, cifar_test_dir):
    from PIL import Image

    photo = next((cifar_test_dir / "cat").glob("*.jpg"))
    data = tmp_path / "data"
    (data / "cat" / "nested").mkdir(parents=True)
    with Image.open(photo) as image:
        image.save(data / "cat" / "0001.jpg")
        image.save(data / "cat" / "0001.JPEG", format="JPEG")
        image.save(data / "cat" / "0001.png")
        image.save(data / "cat" / "nested" / "0002.jpg")
    summary = export_corrupted_folder(ExportConfig(data=data, out=tmp_path / "out", protocol="cifar10-c",
                                                   corruptions=["contrast"], severities=[1]), progress=False)
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.png"))
    assert summary.written == 4 and len(written) == 4, written
    assert "contrast/1/cat/nested/0002.png" in written and "contrast/1/cat/0001.png" in written


def test_attack_counts_unreadable_images_once_and_honours_strict(tmp_path, cifar_test_dir, resnet20_file):
    data = copy_per_class(cifar_test_dir, tmp_path / "data", 2)
    (data / "cat" / "zz-broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    common = dict(model="CIFAR10_ResNet20_GAP", checkpoint=resnet20_file, data=data, attacks=["linf-pgd", "fgsm"],
                  eps=parse_epsilons("1/255,2/255"), steps=1, workers=0, batch_size=1)
    summary = evaluate_attacks(AttackEvalConfig(db=tmp_path / "r.sqlite", **common), progress=False)
    assert summary["n"] == 20 and summary["skipped_unreadable"] == 1
    with pytest.raises(UnreadableImages, match="zz-broken.jpg"):
        evaluate_attacks(AttackEvalConfig(db=tmp_path / "strict.sqlite", strict=True, **common), progress=False)
    result = cli("eval-attack", "--model", "CIFAR10_ResNet20_GAP", "--checkpoint", str(resnet20_file), "--data",
                 str(data), "--eps", "1/255", "--steps", "1", "--workers", "0", "--quiet", "--db",
                 str(tmp_path / "cli.sqlite"), "--json", str(tmp_path / "s.json"))
    assert result.returncode == 0, result.stderr
    assert "skipped 1 unreadable images" in result.stdout
    assert json.loads((tmp_path / "s.json").read_text())["skipped_unreadable"] == 1
