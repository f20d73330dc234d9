"""Shared fixtures: the real test data in ../shared/data (or $ROBUSTBENCH_GCP_TEST_DATA)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

DATA_ROOT = Path(os.environ.get("ROBUSTBENCH_GCP_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _threads_per_process() -> int:
    """At most 2 threads, split among pytest-xdist workers (torch on more threads than cores is
    many times slower); OMP_NUM_THREADS, where set, is the limit."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    limit = int(os.environ.get("OMP_NUM_THREADS", "2"))
    return max(1, min(limit, 2, (os.cpu_count() or 1) // workers))


torch.set_num_threads(_threads_per_process())
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:  # the CLI and torchrun processes a test starts share the same cores
    os.environ["OMP_NUM_THREADS"] = str(_threads_per_process())


@pytest.fixture(autouse=True)
def _seeded_global_rng():
    """Every test starts from the same global RNG state, whatever ran before it (random order
    included), so a test's random data never depends on the order of the suite."""
    torch.manual_seed(0)


def shared_path(relative: str) -> Path:
    """A path under the shared test data, or a skip naming the variable that points there."""
    path = DATA_ROOT / relative
    if not path.exists():
        pytest.skip(f"test data {path} not found; set ROBUSTBENCH_GCP_TEST_DATA to the shared data folder")
    return path


@pytest.fixture(scope="session")
def resnet20_file() -> Path:
    return shared_path("cifar10_resnet_akamaster/resnet20-12fca82f.th")


@pytest.fixture(scope="session")
def resnet44_file() -> Path:
    return shared_path("cifar10_resnet_akamaster/resnet44-014dd654.th")


@pytest.fixture(scope="session")
def cifar_test_dir() -> Path:
    return shared_path("cifar10_test_jpg/test")


@pytest.fixture(scope="session")
def resnet20(resnet20_file):
    """The pretrained CIFAR-10 ResNet-20, in eval mode."""
    import robustbench_gcp as rg

    return rg.create_model("CIFAR10_ResNet20_GAP", checkpoint=resnet20_file).eval()


def labelled_cifar(root: Path, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A class-balanced subset of ``limit`` real CIFAR-10 test photos (float in [0, 1]) and labels."""
    from robustbench_gcp.data import balanced_subset, image_folder

    dataset = balanced_subset(image_folder(root, 32), limit=limit, seed=0)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))]).float() / 255
    labels = torch.tensor([dataset[i][1] for i in range(len(dataset))])
    return images, labels


def stored_cells(db: Path) -> dict:
    """Every cell of a results database: (name, level) → (n, top-1, top-5 errors, flags)."""
    import sqlite3

    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT name, level, n, top1_errors, top5_errors, mask FROM cells").fetchall()
    return {(name, level): rest for name, level, *rest in rows}


def _load_images(paths, size: int | None) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    arrays = []
    for path in paths:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if size is not None and image.size != (size, size):
                image = image.resize((size, size), Image.BILINEAR)
            arrays.append(np.asarray(image))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255


@pytest.fixture(scope="session")
def imagenet_photos() -> torch.Tensor:
    """24 real ImageNet validation photos at 224 px, float in [0, 1]."""
    paths = sorted(shared_path("imagenet_val_acuity/data").glob("*.JPEG"))[:24]
    return _load_images(paths, 224)


@pytest.fixture(scope="session")
def cifar_photos() -> torch.Tensor:
    """40 real CIFAR-10 test images (4 per class), 32 px, float in [0, 1]."""
    root = shared_path("cifar10_test_jpg/test")
    paths = [p for folder in sorted(root.iterdir()) for p in sorted(folder.glob("*.jpg"))[:4]]
    return _load_images(paths, None)


class CliResult:
    """What a CLI call left: exit status, stdout, stderr (the fields of subprocess.CompletedProcess)."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_cli_in_process(*args: str) -> CliResult:
    """``gcp-robust ARGS`` through the real entry point, in this process: the same parsing, errors
    and exit codes as a subprocess, without paying torch's import for every call."""
    import contextlib
    import io

    from robustbench_gcp.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return CliResult(code, out.getvalue(), err.getvalue())


def copy_per_class(source: Path, target: Path, per_class: int) -> Path:
    """A small ImageFolder: the first ``per_class`` images of each class folder of ``source``."""
    for folder in sorted(source.iterdir()):
        (target / folder.name).mkdir(parents=True)
        for path in sorted(folder.glob("*.jpg"))[:per_class]:
            (target / folder.name / path.name).write_bytes(path.read_bytes())
    return target
