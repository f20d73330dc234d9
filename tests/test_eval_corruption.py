"""`gcp-robust eval-corruption` on real CIFAR-10 photos with a real pretrained ResNet-20."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_per_class, run_cli_in_process

from robustbench_gcp.data.batches import UnreadableImages
from robustbench_gcp.evaluate.corruption import CorruptionEvalConfig, evaluate_corruptions


def cli(*args: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robustbench_gcp.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def cell_counts(db: Path) -> dict:
    """Counts and per-image outcomes of every cell."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT name, level, n, top1_errors, top5_errors, mask FROM cells").fetchall()
    for *_, n, top1, _, mask in rows:  # the outcomes say what the counts say
        assert int(np.unpackbits(np.frombuffer(mask, np.uint8)).sum()) == n - top1
    return {(name, level): counts for name, level, *counts in rows}


@pytest.fixture
def base_args(resnet20_file, cifar_test_dir) -> list[str]:
    return ["eval-corruption", "--model", "CIFAR10_ResNet20_GAP", "--checkpoint", str(resnet20_file),
            "--data", str(cifar_test_dir), "--protocol", "cifar10-c", "--workers", "0", "--quiet"]


def test_real_run_gives_plausible_numbers_and_a_byte_identical_json(base_args, tmp_path):
    args = [*base_args, "--limit", "300", "--corruptions", "gaussian_noise,contrast,pixelate",
            "--severities", "1,3,5", "--batch-size", "100", "--db", str(tmp_path / "r.sqlite")]
    first = cli(*args, "--json", str(tmp_path / "a.json"))
    assert first.returncode == 0, first.stderr
    summary = json.loads((tmp_path / "a.json").read_text())
    assert summary["n"] == 300 and 12 <= summary["clean_error"] <= 24  # ~19 % on this JPEG copy
    for name, rates in summary["errors"].items():
        assert rates[1] is None and rates[3] is None
        assert summary["clean_error"] < rates[0] < rates[2] < rates[4] <= 92, (name, rates)
    assert summary["mCE"] is None and summary["mean_error"] == pytest.approx(
        np.mean([r for rates in summary["errors"].values() for r in rates if r is not None]), abs=1e-3)
    assert "| gaussian_noise (error %)" in first.stdout
    again = cli(*args, "--batch-size", "64", "--json", str(tmp_path / "b.json"))  # all cells resumed
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def stored_rows(db: Path) -> int:
    """Finished cells plus (cell, chunk) parts written so far."""
    with sqlite3.connect(db) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"cells", "parts"} <= tables:
            return 0
        return sum(connection.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("cells", "parts"))


@pytest.mark.slow  # whole CLI processes, over a minute: CI runs it, plain `tox` leaves it to `tox -e slow`
def test_killed_run_resumes_mid_chunk_to_the_same_counts(base_args, tmp_path):
    args = [*base_args, "--limit", "200", "--corruptions", "gaussian_noise,shot_noise,fog,snow,frost,pixelate",
            "--batch-size", "20"]
    whole = cli(*args, "--db", str(tmp_path / "whole.sqlite"))  # one chunk: the per-cell loop
    assert whole.returncode == 0, whole.stderr
    db = tmp_path / "killed.sqlite"
    process = subprocess.Popen([sys.executable, "-m", "robustbench_gcp.cli", *args, "--chunk-size", "70",
                                "--db", str(db)])
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if db.exists() and stored_rows(db) >= 8:  # inside the first chunk of 70 (31 cells each)
            break
        time.sleep(0.05)
    process.kill()
    process.wait()
    assert 1 <= stored_rows(db) < 31 * 3, "the kill should land mid-run"
    assert len(cell_counts(db)) < 31
    resumed = cli(*args, "--chunk-size", "45", "--db", str(db))  # another chunk size: still the same counts
    assert resumed.returncode == 0, resumed.stderr
    assert cell_counts(db) == cell_counts(tmp_path / "whole.sqlite")
    assert stored_rows(db) == 31  # the parts were merged into cells


@pytest.mark.slow  # whole CLI processes, over a minute: CI runs it, plain `tox` leaves it to `tox -e slow`
def test_two_gloo_processes_count_like_one(base_args, tmp_path):
    args = [*base_args, "--limit", "120", "--corruptions", "glass_blur,motion_blur", "--severities", "3",
            "--batch-size", "16", "--device", "cpu"]
    single = cli(*args, "--db", str(tmp_path / "one.sqlite"))
    assert single.returncode == 0, single.stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
                "-m", "robustbench_gcp.cli", *args, "--chunk-size", "50", "--db", str(tmp_path / "two.sqlite")]
    double = subprocess.run(launcher, capture_output=True, text=True, timeout=900, env=env)
    assert double.returncode == 0, double.stderr[-3000:]
    assert cell_counts(tmp_path / "two.sqlite") == cell_counts(tmp_path / "one.sqlite")


def test_compare_flags_an_injected_regression(tmp_path):
    baseline = {"model": "m", "clean_error": 20.0, "errors": {"fog": [30.0, 35.0, None, None, None]},
                "mCE": None, "relative_mCE": None, "mean_error": 32.5}
    current = json.loads(json.dumps(baseline))
    (tmp_path / "base.json").write_text(json.dumps(baseline))
    (tmp_path / "same.json").write_text(json.dumps(current))
    same = run_cli_in_process("compare", str(tmp_path / "base.json"), str(tmp_path / "same.json"))
    assert same.returncode == 0 and "| fog/1" in same.stdout
    current["errors"]["fog"][1] = 37.5
    (tmp_path / "worse.json").write_text(json.dumps(current))
    base, worse_file = str(tmp_path / "base.json"), str(tmp_path / "worse.json")
    worse = run_cli_in_process("compare", base, worse_file, "--max-increase", "1")
    assert worse.returncode == 1 and "WORSE" in worse.stdout
    tolerated = run_cli_in_process("compare", base, worse_file, "--max-increase", "3")
    assert tolerated.returncode == 0


def test_table_and_plot_show_gap_next_to_gcp(tmp_path, cifar_test_dir, resnet20_file):
    db = tmp_path / "r.sqlite"
    common = dict(data=cifar_test_dir, protocol="cifar10-c", corruptions=["fog"], severities=[1, 5], limit=50,
                  workers=0, db=db)
    evaluate_corruptions(CorruptionEvalConfig(model="cifar_resnet20_gcp", **common), progress=False)
    evaluate_corruptions(CorruptionEvalConfig(model="CIFAR10_ResNet20_GAP", checkpoint=resnet20_file, **common),
                         progress=False)
    table = cli("table", "--db", str(db))
    assert table.returncode == 0, table.stderr
    header = [cell.strip() for cell in table.stdout.splitlines()[0].strip("|").split("|")]
    assert header == ["metric", "CIFAR10_ResNet20_GAP · cifar10-c · n=50", "cifar_resnet20_gcp · cifar10-c · n=50"]
    assert "(CE)" not in table.stdout and "mCE" not in table.stdout  # AlexNet-normalised: ImageNet only
    plot = cli("plot", "--db", str(db), "--out", str(tmp_path / "errors.png"))
    assert plot.returncode == 0 and (tmp_path / "errors.png").stat().st_size > 10_000


def test_clear_errors(tmp_path, cifar_test_dir, resnet20_file):
    missing = cli("eval-corruption", "--model", "cifar_resnet20_gap", "--data", str(tmp_path / "nothing"),
                  "--db", str(tmp_path / "r.sqlite"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "empty" / "a").mkdir(parents=True)
    empty = cli("eval-corruption", "--model", "cifar_resnet20_gap", "--data", str(tmp_path / "empty"),
                "--db", str(tmp_path / "r.sqlite"))
    assert empty.returncode == 2 and "holds no images" in empty.stderr
    mismatch = cli("eval-corruption", "--model", "resnet18_gap", "--data", str(cifar_test_dir),
                   "--db", str(tmp_path / "r.sqlite"))
    assert mismatch.returncode == 2 and "has 10 classes but resnet18_gap outputs 1000" in mismatch.stderr


def test_unreadable_images_are_skipped_and_counted_or_fatal(tmp_path, cifar_test_dir):
    data = copy_per_class(cifar_test_dir, tmp_path / "data", 2)
    (data / "cat" / "broken.jpg").write_bytes(b"not a jpeg")
    config = CorruptionEvalConfig(model="cifar_resnet20_gap", data=data, protocol="cifar10-c",
                                  corruptions=["contrast"], severities=[1], workers=0, db=tmp_path / "r.sqlite")
    summary = evaluate_corruptions(config, progress=False)
    assert summary["n"] == 20 and summary["skipped_unreadable"] == 1  # one file, counted once per run
    config.strict, config.db = True, tmp_path / "strict.sqlite"
    with pytest.raises(UnreadableImages, match="broken.jpg"):
        evaluate_corruptions(config, progress=False)
