"""`gcp-robust corrupt` and `perturb` on a full disk (a real tmpfs) and their reproducibility: one
error line naming the file, nothing partial a rerun would trust, and MP4 exports whose bytes do
not depend on the run or on where it was killed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import copy_per_class, run_cli_in_process, shared_path

CLI = [sys.executable, "-m", "robustbench_gcp.cli"]
# one smooth sequence of 31 frames: a few seconds per export of a few photos
MP4_ARGS = ["--protocol", "imagenet-p", "--perturbations", "brightness", "--device", "cpu", "--quiet"]


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root``, hidden ones (temporary files) included."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _run(*args: str) -> subprocess.CompletedProcess:
    """The CLI in its own process: a crash (SIGBUS) must not take the test runner with it."""
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture
def photo_folder(tmp_path) -> Callable[[int], Path]:
    """An ImageFolder of the first ``count`` real ImageNet validation photos, in two classes."""

    def make(count: int) -> Path:
        photos = sorted(shared_path("imagenet_val_acuity/data").glob("*.JPEG"))[:count]
        for index, photo in enumerate(photos):
            folder = tmp_path / "photos" / f"class{index % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(photo, folder / photo.name)
        return tmp_path / "photos"

    return make


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A real 3 MB file system (tmpfs), unmounted afterwards; mounting needs root."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = shutil.which("mount")
    result = subprocess.run([mount, "-t", "tmpfs", "-o", "size=3M", "tmpfs", str(disk)], capture_output=True,
                            text=True) if mount else None
    if result is None or result.returncode != 0:
        reason = f"cannot mount a tmpfs ({result.stderr.strip() if result else 'no mount command'}): run as root"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def _fill(disk: Path, leave: int) -> Path:
    """All but ``leave`` bytes of ``disk`` taken by one file."""
    filler = disk / "filler"
    stat = os.statvfs(disk)
    filler.write_bytes(bytes(stat.f_bavail * stat.f_frsize - leave))
    return filler


def _one_error_line(result: subprocess.CompletedProcess, command: str, out: Path) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"gcp-robust {command}: error: {out}/"), lines[0]
    assert "No space left on device; free space" in lines[0], lines[0]


def test_perturb_cifar10p_on_a_full_disk_is_one_line_and_leaves_nothing(small_disk, tmp_path, cifar_test_dir):
    """A 4.8 MB CIFAR-10-P array on a 3 MB disk: an error, not a SIGBUS from a memory map over a
    sparse file, and no temporary array left behind."""
    photos = copy_per_class(cifar_test_dir, tmp_path / "photos", 5)
    out = small_disk / "out"
    result = _run("perturb", "--data", str(photos), "--out", str(out), "--protocol", "cifar10-p",
                  "--perturbations", "gaussian_noise", "--device", "cpu", "--quiet")
    _one_error_line(result, "perturb", out)
    assert "gaussian_noise.npy" in result.stderr
    assert _files(small_disk) == {}


def test_corrupt_on_a_full_disk_is_one_line_and_a_rerun_completes_it(small_disk, photo_folder, tmp_path):
    """JPEGs on a disk with 64 KB left: ENOSPC named the file, and after freeing space the same
    command writes the files an export on a roomy disk writes."""
    photos = photo_folder(6)
    args = ["--data", str(photos), "--corruptions", "gaussian_noise", "--severities", "5", "--device", "cpu",
            "--quiet"]
    reference = run_cli_in_process("corrupt", *args, "--out", str(tmp_path / "roomy"))
    assert reference.returncode == 0, reference.stderr
    filler = _fill(small_disk, 64 * 1024)
    out = small_disk / "out"
    _one_error_line(_run("corrupt", *args, "--out", str(out)), "corrupt", out)
    roomy, left = _files(tmp_path / "roomy"), _files(out)
    assert len(left) < len(roomy) and all(roomy.get(name) == content for name, content in left.items())
    filler.unlink()
    assert _run("corrupt", *args, "--out", str(out)).returncode == 0
    assert _files(out) == roomy


def test_perturb_mp4_on_a_full_disk_is_one_line_and_leaves_nothing(small_disk, photo_folder):
    """An MP4 bigger than the 16 KB left: the encoded bytes did not fit, and nothing stays behind."""
    filler = _fill(small_disk, 16 * 1024)
    out = small_disk / "out"
    result = _run("perturb", "--data", str(photo_folder(1)), "--out", str(out), *MP4_ARGS)
    _one_error_line(result, "perturb", out)
    assert ".mp4" in result.stderr
    assert _files(small_disk) == {"filler": filler.read_bytes()}


@pytest.fixture
def uninterrupted_mp4s(photo_folder, tmp_path) -> tuple[Path, dict[str, bytes]]:
    """The photos and the MP4s of one uninterrupted export."""
    photos = photo_folder(4)
    result = run_cli_in_process("perturb", "--data", str(photos), "--out", str(tmp_path / "once"), *MP4_ARGS)
    assert result.returncode == 0, result.stderr
    return photos, _files(tmp_path / "once")


def test_two_mp4_exports_write_the_same_bytes(uninterrupted_mp4s, tmp_path):
    """Encoded in one process after other videos: x264's output must not depend on what ran before."""
    photos, once = uninterrupted_mp4s
    assert len(once) == 4
    again = run_cli_in_process("perturb", "--data", str(photos), "--out", str(tmp_path / "again"), *MP4_ARGS)
    assert again.returncode == 0, again.stderr
    assert _files(tmp_path / "again") == once


def test_a_killed_mp4_export_resumes_to_the_same_bytes(uninterrupted_mp4s, tmp_path):
    """SIGKILL once the first video is on disk: the videos left are complete, and the rerun writes
    the others as an uninterrupted export does."""
    photos, once = uninterrupted_mp4s
    out = tmp_path / "killed"
    process = subprocess.Popen([*CLI, "perturb", "--data", str(photos), "--out", str(out), *MP4_ARGS],
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.rglob("*.mp4")) and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    left = {name: content for name, content in _files(out).items() if name.endswith(".mp4")}
    assert 0 < len(left) < len(once), "the export was not killed half-way"
    assert all(once[name] == content for name, content in left.items())
    resumed = _run("perturb", "--data", str(photos), "--out", str(out), *MP4_ARGS)
    assert resumed.returncode == 0, resumed.stderr
    assert {name: content for name, content in _files(out).items() if name.endswith(".mp4")} == once
