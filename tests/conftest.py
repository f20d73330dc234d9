"""Shared fixtures: the real test data in ../shared/data (or $ROBUSTBENCH_GCP_TEST_DATA)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

DATA_ROOT = Path(os.environ.get("ROBUSTBENCH_GCP_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

torch.set_num_threads(min(2, os.cpu_count() or 1))


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
