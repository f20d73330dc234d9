"""Released-file sources give the same counts as on-the-fly corruption with the same seeds."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import torch

from robustbench_gcp.corruptions import corrupt_to_uint8
from robustbench_gcp.data import image_folder
from robustbench_gcp.evaluate.corruption import CorruptionEvalConfig, evaluate_corruptions
from robustbench_gcp.export import ExportConfig, export_corrupted_folder
from robustbench_gcp.rng import image_streams


def _counts(db: Path) -> dict:
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT name, level, n, top1_errors, top5_errors FROM cells").fetchall()
    return {(name, level): counts for name, level, *counts in rows}


def _copy_tree(source: Path, target: Path, per_class: int) -> Path:
    for folder in sorted(source.iterdir()):
        (target / folder.name).mkdir(parents=True)
        for image in sorted(folder.glob("*"))[:per_class]:
            shutil.copy(image, target / folder.name / image.name)
    return target


def test_released_imagenet_c_tree_matches_generated(tmp_path, imagenet_photos):
    from conftest import shared_path

    clean = tmp_path / "val"
    for i, photo in enumerate(sorted(shared_path("imagenet_val_acuity/data").glob("*.JPEG"))[:6]):
        (clean / f"class{i % 2}").mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, clean / f"class{i % 2}" / photo.name)
    cells = dict(corruptions=["gaussian_noise", "zoom_blur"], severities=[1, 4])
    export_corrupted_folder(ExportConfig(data=clean, out=tmp_path / "imagenet-c", batch_size=4, **cells),
                            progress=False)
    common = dict(model="resnet18_gcp", num_classes=2, workers=0, batch_size=4, **cells)
    evaluate_corruptions(CorruptionEvalConfig(data=clean, db=tmp_path / "fly.sqlite", **common), progress=False)
    evaluate_corruptions(CorruptionEvalConfig(data=tmp_path / "imagenet-c", source="imagenet-c", clean_data=clean,
                                              db=tmp_path / "files.sqlite", **common), progress=False)
    assert _counts(tmp_path / "fly.sqlite") == _counts(tmp_path / "files.sqlite")


def test_released_cifar10_c_arrays_match_generated(tmp_path, cifar_test_dir, resnet20_file):
    clean = _copy_tree(cifar_test_dir, tmp_path / "cifar", per_class=4)
    dataset = image_folder(clean, 32)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))]).float() / 255
    folder = tmp_path / "CIFAR-10-C"
    folder.mkdir()
    np.save(folder / "labels.npy", np.tile(np.array(dataset.targets, dtype=np.uint8), 5))
    for name in ("fog", "impulse_noise"):
        rows = [corrupt_to_uint8(images, name, s, protocol="cifar10-c",
                                 generator=image_streams(0, range(len(images)), name, s))
                for s in range(1, 6)]
        np.save(folder / f"{name}.npy", torch.cat(rows).permute(0, 2, 3, 1).numpy())
    common = dict(model="CIFAR10_ResNet20_GAP", checkpoint=resnet20_file, protocol="cifar10-c", workers=0,
                  corruptions=["fog", "impulse_noise"], severities=[2, 5], limit=20)
    evaluate_corruptions(CorruptionEvalConfig(data=clean, db=tmp_path / "fly.sqlite", **common), progress=False)
    summary = evaluate_corruptions(CorruptionEvalConfig(data=folder, source="cifar10-c", clean_data=clean,
                                                        db=tmp_path / "files.sqlite", **common), progress=False)
    assert _counts(tmp_path / "fly.sqlite") == _counts(tmp_path / "files.sqlite")
    assert summary["n"] == 20
