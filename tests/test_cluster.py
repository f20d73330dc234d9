"""Sweeps on a real SLURM cluster: a throwaway one on this machine (tools/local-slurm), started
for these tests and stopped after them. They skip where it cannot start (no root, no apt-get),
except in CI (CI=true), where that is a failure. Run them with `tox -e cluster`."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import shared_path
from slurm_cluster import cluster_unavailable_reason, start_local_slurm
from test_sweep import write_sweep

from robustbench_gcp.sweep import plan, read_sweep, sweep_status
from robustbench_gcp.sweep.unit import _evaluate, read_state

pytestmark = pytest.mark.cluster
SLURM = ["--executor", "slurm", "--gpus-per-unit", "0", "--cpus-per-unit", "1", "--poll", "0.5"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = cluster_unavailable_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the SLURM tests, but no local cluster can start: {reason}")
        pytest.skip(reason)
    started = start_local_slurm(tmp_path_factory.mktemp("slurm"))
    saved = os.environ.get("SLURM_CONF")
    os.environ.update(started.env)
    yield started
    started.stop()
    if saved is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = saved


def gcp_robust(*args: str, check: int | None = 0) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "robustbench_gcp.cli", *args], capture_output=True, text=True,
                          timeout=900)
    if check is not None:
        assert done.returncode == check, done.stdout + done.stderr
    return done


def outcomes(store: Path) -> dict:
    """(run identity key, cell, level) → counts and per-image outcomes of every cell."""
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT r.key, c.name, c.level, c.n, c.top1_errors, c.top5_errors, c.skipped, c.mask "
                          "FROM cells c JOIN runs r ON r.id = c.run_id").fetchall()
    return {tuple(row[:3]): row[3:] for row in rows}


def direct(sweep_file: Path, db: Path) -> dict:
    """The sweep's evaluations run the plain way: in one process, one store, no shards."""
    text = sweep_file.read_text().replace("shards = 2\n", "")
    whole = sweep_file.with_name("direct.toml")
    whole.write_text(text)
    for unit in plan(read_sweep(whole)):
        _evaluate(unit.config(db))
    return outcomes(db)


EVALUATIONS = """[[evaluation]]
kind = "corruption"
data = "cifar10"
corruptions = ["gaussian_noise", "fog", "jpeg_compression"]
severities = [1, 3]
limit = 48
chunk_size = 16
shards = 2

[[evaluation]]
kind = "attack"
data = "cifar10"
attacks = ["linf-pgd"]
eps = ["1/255", "2/255"]
steps = 5
limit = 24

[[evaluation]]
kind = "attack"
data = "cifar10"
attacks = ["apgd-ce"]
eps = ["1/255"]
steps = 5
limit = 24

[[evaluation]]
kind = "perturbation"
data = "cifar10"
perturbations = ["gaussian_noise", "brightness"]
limit = 8
"""
MODELS = '[[model]]\nrecord = "CIFAR10_ResNet20_GAP"\n\n[[model]]\nrecord = "CIFAR10_ResNet32_GAP"\n\n'


def test_a_sweep_on_slurm_gives_the_numbers_of_direct_runs_and_of_local_processes(cluster, tmp_path):
    sweep = write_sweep(tmp_path, MODELS + EVALUATIONS)
    units = plan(read_sweep(sweep))
    assert len(units) == 10 and sum(u.shard is not None for u in units) == 4
    done = gcp_robust("sweep", "run", str(sweep), "--out", str(tmp_path / "slurm"), *SLURM)
    assert "merged:" in done.stdout
    jobs = json.loads((tmp_path / "slurm" / "jobs.json").read_text())
    assert len({job["job"].split("_")[0] for job in jobs.values()}) == 1  # one job array
    merged = outcomes(tmp_path / "slurm" / "merged.sqlite")
    assert merged == direct(sweep, tmp_path / "direct.sqlite")
    assert len(merged) == 2 * (7 + 1 + 2 + 1 + 2)  # per model: clean + 6 corruption cells, clean + 3 attack, 2 FP
    gcp_robust("sweep", "run", str(sweep), "--out", str(tmp_path / "local"), "--executor", "local",
               "--processes", "2")
    assert outcomes(tmp_path / "local" / "merged.sqlite") == merged
    table = gcp_robust("table", "--db", str(tmp_path / "slurm" / "merged.sqlite")).stdout
    assert "CIFAR10_ResNet32_GAP" in table and "clean top-1" in table and "robust @ 2/255" in table


def _wait(out: Path, until, timeout: float = 300.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = sweep_status(out)
        if until(status):
            return status
        time.sleep(0.3)
    raise AssertionError(f"the sweep in {out} did not get there in {timeout} s: "
                         f"{[(s.unit.id, s.state) for s in sweep_status(out)]}")


def _parts(out: Path, unit_id: str) -> int:
    store = out / "units" / unit_id / "store.sqlite"
    if not store.is_file():
        return 0
    try:
        with sqlite3.connect(f"{store.as_uri()}?mode=ro", uri=True) as db:
            return db.execute("SELECT COUNT(*) FROM parts").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def _running_with_parts(out: Path, units: list[str]):
    return lambda status: all(s.state == "running" and _parts(out, s.unit.id) for s in status if s.unit.id in units)


def test_cancelled_requeued_and_preempted_units_resume_without_counting_twice(cluster, tmp_path):
    models = MODELS + '[[model]]\nrecord = "CIFAR10_ResNet44_GAP"\n\n'
    body = models + EVALUATIONS[EVALUATIONS.index('[[evaluation]]\nkind = "perturbation"'):].replace(
        "limit = 8\n", "limit = 192\nchunk_size = 4\n")
    sweep = write_sweep(tmp_path, body)
    out = tmp_path / "out"
    gcp_robust("sweep", "run", str(sweep), "--out", str(out), "--no-wait", *SLURM)
    jobs = json.loads((out / "jobs.json").read_text())
    first, second, third = [u.id for u in plan(read_sweep(sweep))]
    # the node has two cores: the first two units run, some of their chunks stored
    _wait(out, _running_with_parts(out, [first, second]), timeout=180)
    subprocess.run(["scancel", jobs[first]["job"]], check=True)
    subprocess.run(["scontrol", "requeue", jobs[second]["job"]], check=True)
    # the signal SLURM sends before a time limit or a preemption: submitit checkpoints and requeues the unit
    _wait(out, _running_with_parts(out, [third]), timeout=180)
    subprocess.run(["scancel", "--signal=USR2", jobs[third]["job"]], check=True)
    status = _wait(out, lambda status: not any(s.queued or s.state == "running" for s in status), timeout=300)
    states = {s.unit.id: s for s in status}
    assert states[first].state == "failed" and "without finishing" in states[first].error
    assert states[second].state == states[third].state == "done"
    assert all(read_state(out, unit)["restarts"] >= 1 for unit in (second, third))
    listed = gcp_robust("sweep", "status", str(out), check=1).stdout
    assert f"failed {first}" in listed
    again = gcp_robust("sweep", "run", str(sweep), "--out", str(out), *SLURM)
    assert json.loads((out / "jobs.json").read_text())[first]["job"] != jobs[first]["job"]
    assert all(json.loads((out / "jobs.json").read_text())[u]["job"] == jobs[u]["job"] for u in jobs if u != first)
    assert "merged:" in again.stdout
    assert outcomes(out / "merged.sqlite") == direct(sweep, tmp_path / "direct.sqlite")


def test_a_failing_unit_is_reported_and_only_it_reruns_once_fixed(cluster, tmp_path):
    good = shared_path("cifar10_resnet_akamaster/resnet32-d509ac18.th")
    copy = tmp_path / "resnet32.th"
    shutil.copy(good, copy)
    body = (f'[[model]]\nrecord = "CIFAR10_ResNet20_GAP"\n\n[[model]]\nrecord = "CIFAR10_ResNet32_GAP"\n'
            f'checkpoint = "{copy}"\n\n' + EVALUATIONS.split("[[evaluation]]\nkind = \"attack\"")[0])
    sweep = write_sweep(tmp_path, body)
    out = tmp_path / "out"
    gcp_robust("sweep", "run", str(sweep), "--out", str(out), "--no-wait", "--array-parallelism", "1", *SLURM)
    copy.write_bytes(good.read_bytes()[:4096])  # truncated after the checks, before its units start
    status = _wait(out, lambda status: not any(s.queued or s.state == "running" for s in status), timeout=300)
    failed = [s for s in status if s.state == "failed"]
    assert {s.unit.model for s in failed} == {"CIFAR10_ResNet32_GAP"} and len(failed) == 2
    assert all(str(copy) in s.error and Path(s.log).is_file() for s in failed), [s.error for s in failed]
    assert all(s.state == "done" for s in status if s.unit.model == "CIFAR10_ResNet20_GAP")
    listed = gcp_robust("sweep", "status", str(out), check=1).stdout
    assert f"failed {failed[0].unit.id}: " in listed and str(copy) in listed
    refused = gcp_robust("sweep", "run", str(sweep), "--out", str(out), *SLURM, check=2)
    assert str(copy) in refused.stderr  # the checks see the broken file before anything is submitted
    shutil.copy(good, copy)
    before = json.loads((out / "jobs.json").read_text())
    gcp_robust("sweep", "run", str(sweep), "--out", str(out), *SLURM)
    after = json.loads((out / "jobs.json").read_text())
    assert {u for u in after if after[u] != before[u]} == {s.unit.id for s in failed}
    assert all(s.state == "done" for s in sweep_status(out))
