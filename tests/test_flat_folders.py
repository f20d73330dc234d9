"""The official ImageNet validation layout: a flat folder of images with a labels file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import copy_per_class, run_cli_in_process


@pytest.fixture
def flat_and_folders(tmp_path, cifar_test_dir) -> tuple[Path, Path, Path]:
    """The same 30 CIFAR photos in class folders and flat, with a caffe-style 'FILE LABEL' list."""
    folders = copy_per_class(cifar_test_dir, tmp_path / "folders", 3)
    flat = tmp_path / "flat"
    flat.mkdir()
    lines = []
    for label, folder in enumerate(sorted(folders.iterdir())):
        for image in sorted(folder.iterdir()):
            name = f"val_{folder.name}_{image.name}"
            shutil.copy(image, flat / name)
            lines.append(f"{name} {label}")
    labels = tmp_path / "val.txt"
    labels.write_text("\n".join(reversed(lines)) + "\n")  # any order
    return folders, flat, labels


def _corruption(data: Path, db: Path, resnet20_file: Path, *extra: str):
    return run_cli_in_process("eval-corruption", "--model", "CIFAR10_ResNet20_GAP", "--checkpoint", str(resnet20_file),
                              "--data", str(data), "--corruptions", "fog", "--severities", "2", "--workers", "0",
                              "--quiet", "--db", str(db), "--json", str(db.with_suffix(".json")), *extra)


def test_a_flat_folder_with_labels_counts_like_class_folders(flat_and_folders, tmp_path, resnet20_file):
    folders, flat, labels = flat_and_folders
    assert _corruption(folders, tmp_path / "a.sqlite", resnet20_file).returncode == 0
    result = _corruption(flat, tmp_path / "b.sqlite", resnet20_file, "--labels", str(labels))
    assert result.returncode == 0, result.stderr
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert (a["clean_error"], a["errors"], a["n"]) == (b["clean_error"], b["errors"], b["n"]) and a["n"] == 30
    attack = run_cli_in_process("eval-attack", "--model", "CIFAR10_ResNet20_GAP", "--checkpoint", str(resnet20_file),
                                "--data", str(flat), "--labels", str(labels), "--attacks", "linf-pgd", "--eps", "0",
                                "--steps", "1", "--workers", "0", "--quiet", "--db", str(tmp_path / "c.sqlite"))
    assert attack.returncode == 0, attack.stderr


def test_the_devkit_csv_names_classes_by_wordnet_id(flat_and_folders, tmp_path, resnet20_file):
    _, flat, labels = flat_and_folders
    wnids = [f"n{label:08d}" for label in range(10)]
    rows = ["ImageId,PredictionString"] + [f"{Path(name).stem},{wnids[int(label)]} 1 2 3 4"
                                          for name, label in (line.split() for line in labels.read_text().splitlines())]
    csv = tmp_path / "LOC_val_solution.csv"
    csv.write_text("\n".join(rows) + "\n")
    index = tmp_path / "index.json"
    index.write_text(json.dumps({str(i): [w, f"class{i}"] for i, w in enumerate(wnids)}))
    assert _corruption(flat, tmp_path / "b.sqlite", resnet20_file, "--labels", str(labels)).returncode == 0
    result = _corruption(flat, tmp_path / "d.sqlite", resnet20_file, "--labels", str(csv), "--class-index", str(index))
    assert result.returncode == 0, result.stderr
    b, d = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "bd")
    assert (b["clean_error"], b["errors"]) == (d["clean_error"], d["errors"])


def test_a_labels_file_missing_a_file_is_refused_before_any_cell(flat_and_folders, tmp_path, resnet20_file):
    _, flat, labels = flat_and_folders
    short = tmp_path / "short.txt"
    short.write_text("\n".join(labels.read_text().splitlines()[1:]) + "\n")
    result = _corruption(flat, tmp_path / "e.sqlite", resnet20_file, "--labels", str(short))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and f"--labels {short} has no label for 1 of the 30" in lines[0]
    assert not (tmp_path / "e.sqlite").exists()
    flat_only = _corruption(flat, tmp_path / "f.sqlite", resnet20_file)  # the layout without its labels
    assert flat_only.returncode == 2 and "pass its labels with --labels FILE" in flat_only.stderr


@pytest.mark.parametrize("labels", ["imagenet_meta/ILSVRC2012_val_labels_caffe.txt", "imagenet_val_acuity/dataset.txt"])
def test_real_imagenet_validation_photos_with_their_labels_files(tmp_path, labels):
    from conftest import shared_path

    result = run_cli_in_process("eval-corruption", "--model", "resnet18_gap", "--data",
                                str(shared_path("imagenet_val_acuity/data")), "--labels", str(shared_path(labels)),
                                "--limit", "10", "--corruptions", "fog", "--severities", "1", "--workers", "0",
                                "--quiet", "--db", str(tmp_path / "r.sqlite"), "--json", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["n"] == 10
