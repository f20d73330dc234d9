"""`gcp-robust corrupt`: released layout, in-memory equivalence, resume after interruption."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torchvision.io import decode_image

from robustbench_gcp.corruptions import corrupt
from robustbench_gcp.data import image_folder
from robustbench_gcp.export import ExportConfig, export_corrupted_folder
from robustbench_gcp.rng import image_streams


@pytest.fixture
def small_imagenet(tmp_path) -> Path:
    """8 real validation photos in two class folders."""
    from conftest import shared_path

    photos = sorted(shared_path("imagenet_val_acuity/data").glob("*.JPEG"))[:8]
    for i, photo in enumerate(photos):
        folder = tmp_path / "val" / ("n01440764" if i < 4 else "n01443537")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, folder / photo.name)
    return tmp_path / "val"


@pytest.fixture
def small_cifar(tmp_path, cifar_test_dir) -> Path:
    for folder in sorted(cifar_test_dir.iterdir()):
        (tmp_path / "cifar" / folder.name).mkdir(parents=True)
        for image in sorted(folder.glob("*.jpg"))[:3]:
            shutil.copy(image, tmp_path / "cifar" / folder.name / image.name)
    return tmp_path / "cifar"


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_released_layout_and_same_pixels_as_in_memory(small_imagenet, tmp_path):
    config = ExportConfig(data=small_imagenet, out=tmp_path / "c", corruptions=["motion_blur", "fog"],
                          severities=[2], batch_size=3, seed=4)
    summary = export_corrupted_folder(config, progress=False)
    assert (summary.written, summary.skipped) == (16, 0)
    files = sorted((tmp_path / "c" / "fog" / "2").rglob("*.JPEG"))
    assert [f.parent.name for f in files] == ["n01440764"] * 4 + ["n01443537"] * 4
    dataset = image_folder(small_imagenet, 224)
    images = torch.stack([dataset[i][0] for i in range(8)]).float() / 255
    expected = corrupt(images, "fog", 2, protocol="imagenet-c", generator=image_streams(4, range(8), "fog", 2))
    written = torch.stack([decode_image(str(f)) for f in files]).float() / 255
    assert torch.equal(written, expected)


def test_rerun_skips_and_fills_gaps_identically(small_cifar, tmp_path):
    config = ExportConfig(data=small_cifar, out=tmp_path / "full", protocol="cifar10-c",
                          corruptions=["glass_blur", "spatter"], severities=[1, 4], batch_size=7)
    export_corrupted_folder(config, progress=False)
    full = _files(tmp_path / "full")
    assert len(full) == 30 * 4 and all(name.endswith(".png") for name in full)
    for name in list(full)[::3]:  # an interrupted run: a third of the files missing
        (tmp_path / "full" / name).unlink()
    config.batch_size = 4
    summary = export_corrupted_folder(config, progress=False)
    assert summary.written == len(list(full)[::3]) and summary.skipped == 120 - summary.written
    assert _files(tmp_path / "full") == full


def test_killed_cli_run_resumes_to_the_same_files(small_cifar, tmp_path):
    args = [sys.executable, "-m", "robustbench_gcp.cli", "corrupt", "--data", str(small_cifar), "--protocol",
            "cifar10-c", "--corruptions", "glass_blur,frost,snow", "--batch-size", "2", "--quiet", "--device", "cpu"]
    reference = subprocess.run([*args, "--out", str(tmp_path / "once")], capture_output=True, text=True, timeout=600)
    assert reference.returncode == 0, reference.stderr
    process = subprocess.Popen([*args, "--out", str(tmp_path / "killed")])
    deadline = time.time() + 120
    while time.time() < deadline and len(list((tmp_path / "killed").rglob("*.png"))) < 20:
        time.sleep(0.05)
    process.kill()
    process.wait()
    resumed = subprocess.run([*args, "--out", str(tmp_path / "killed")], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    finished = {k: v for k, v in _files(tmp_path / "killed").items() if k.endswith(".png")}
    assert finished == _files(tmp_path / "once")


def test_cli_errors_are_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "robustbench_gcp.cli", "corrupt", "--data", str(tmp_path / "none"),
                             "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "does not exist" in result.stderr
