"""Sweep files, plans and merges, on the CPU without a cluster (tests/test_cluster.py runs the
sweeps on a real SLURM cluster)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli_in_process, shared_path, stored_cells

from robustbench_gcp.evaluate.corruption import CorruptionEvalConfig, evaluate_corruptions
from robustbench_gcp.evaluate.perturbation import PerturbationEvalConfig, evaluate_perturbations
from robustbench_gcp.sweep import SweepError, merge_stores, plan, read_sweep


def write_sweep(folder: Path, body: str, settings: str = "", **data: str) -> Path:
    """A sweep file over the shared CIFAR data (named cifar10 in [data]) and checkpoints."""
    cifar = data.get("cifar", shared_path("cifar10_test_jpg/test"))
    header = (f'checkpoint_dir = "{shared_path("cifar10_resnet_akamaster")}"\nseed = 0\nprecision = "fp32"\n'
              f'workers = 0\n{settings}\n[data]\ncifar10 = "{cifar}"\n\n')
    path = folder / "sweep.toml"
    path.write_text(header + body)
    return path


MODELS = '[[model]]\nrecord = "CIFAR10_ResNet20_GAP"\n\n[[model]]\nrecord = "CIFAR10_ResNet32_GAP"\n\n'
CORRUPTION = ('[[evaluation]]\nkind = "corruption"\ndata = "cifar10"\ncorruptions = ["gaussian_noise", "fog"]\n'
              'severities = [1, 3]\nlimit = 32\n')
ATTACK = '[[evaluation]]\nkind = "attack"\ndata = "cifar10"\nattacks = ["linf-pgd"]\neps = ["1/255"]\nlimit = 16\n'


def test_plan_lists_units_with_stable_ids_and_splits_what_is_long(tmp_path):
    path = write_sweep(tmp_path, MODELS + CORRUPTION + "shards = 2\n\n" + ATTACK)
    units = plan(read_sweep(path))
    assert [(u.model, u.kind, u.shard) for u in units] == [
        ("CIFAR10_ResNet20_GAP", "corruption", [0, 2]), ("CIFAR10_ResNet20_GAP", "corruption", [1, 2]),
        ("CIFAR10_ResNet20_GAP", "attack", None), ("CIFAR10_ResNet32_GAP", "corruption", [0, 2]),
        ("CIFAR10_ResNet32_GAP", "corruption", [1, 2]), ("CIFAR10_ResNet32_GAP", "attack", None)]
    assert len({u.id for u in units}) == len(units)
    assert [u.id for u in plan(read_sweep(path))] == [u.id for u in units]  # a replanned sweep finds its work
    # the batch size is how, not what: the same units
    resized = write_sweep(tmp_path, MODELS + CORRUPTION + "shards = 2\n\n" + ATTACK, settings="batch_size = 7\n")
    assert [u.id for u in plan(read_sweep(resized))] == [u.id for u in units]
    # a tight time budget splits cells into groups first, then images into shards
    tight = plan(read_sweep(path), max_minutes=units[0].minutes / 3, device_kind="h200")
    corruption = [u for u in tight if u.kind == "corruption" and u.model == "CIFAR10_ResNet20_GAP"]
    assert {tuple(u.cells) for u in corruption} == {("gaussian_noise",), ("fog",)}
    assert all(u.minutes <= units[0].minutes / 3 + 1e-9 for u in corruption)


def test_the_paper_table_plans_without_the_checkpoints_and_says_which_are_missing(tmp_path, monkeypatch):
    path = Path(__file__).parents[1] / "examples" / "paper-table.toml"
    for variable, folder in (("GCP_CHECKPOINTS", "nowhere"), ("IMAGENET_VAL", "val"), ("IMAGENET_C", "c"),
                             ("IMAGENET_P", "p")):
        monkeypatch.setenv(variable, str(tmp_path / folder))
    result = run_cli_in_process("sweep", "plan", str(path))
    assert result.returncode == 0, result.stderr
    models = {line.split("|")[2].strip() for line in result.stdout.splitlines() if line.startswith("| ") and
              "model" not in line}
    assert len(models) == 40
    assert "GPU-hours on h200" in result.stdout
    assert f"checkpoint of ResNet50_GCP_LRnorm: {tmp_path / 'nowhere' / 'ResNet50_GCP_LRnorm.pth.tar'}" in result.stdout
    assert f"corruption data: {tmp_path / 'c'}" in result.stdout
    refused = run_cli_in_process("sweep", "run", str(path), "--out", str(tmp_path / "out"))
    assert refused.returncode == 2 and "missing checkpoint of" in refused.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("body, message", [
    (MODELS + CORRUPTION + "colour = 1\n", "unknown key 'colour'"),
    ('[[model]]\nrecord = "ResNet51_GAP_LRnorm"\n\n' + CORRUPTION, "is not a checkpoint record"),
    ('[[model]]\narchitecture = "resnet5O_gcp"\n\n' + CORRUPTION, "unknown architecture 'resnet5O_gcp'"),
    (MODELS + '[[model]]\nrecord = "CIFAR10_ResNet20_GAP"\n\n' + CORRUPTION, "is listed twice"),
    (MODELS + CORRUPTION + "\n" + CORRUPTION, "evaluation corruption"),
    (MODELS + '[[evaluation]]\nkind = "corruptions"\ndata = "cifar10"\n', "kind = 'corruptions'"),
    (MODELS + CORRUPTION.replace("limit = 32", "limit = -3"), "--limit -3"),
    (MODELS + CORRUPTION.replace('"fog"', '"fgo"'), "unknown corruption 'fgo'"),
    (MODELS + ATTACK.replace('eps = ["1/255"]', 'eps = ["1/0"]'), "epsilon '1/0'"),
    (MODELS + CORRUPTION.replace('data = "cifar10"', 'data = "${NO_SUCH_VARIABLE}/x"'), "${NO_SUCH_VARIABLE}"),
    ("not = toml = at all", "not valid TOML"),
])
def test_bad_sweep_files_are_one_line_and_submit_nothing(tmp_path, body, message):
    path = write_sweep(tmp_path, body)
    for command in (["plan", str(path)], ["run", str(path), "--out", str(tmp_path / "out"), "--executor", "local"]):
        result = run_cli_in_process("sweep", *command)
        assert result.returncode == 2, result.stdout
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "out").exists()


def test_run_refuses_a_checkpoint_that_does_not_fit_and_a_missing_data_root(tmp_path):
    wrong = tmp_path / "resnet20.th"
    shutil.copy(shared_path("cifar10_resnet_akamaster/resnet44-014dd654.th"), wrong)
    body = f'[[model]]\narchitecture = "cifar_resnet20_gap"\ncheckpoint = "{wrong}"\n\n' + CORRUPTION
    result = run_cli_in_process("sweep", "run", str(write_sweep(tmp_path, body)), "--out", str(tmp_path / "out"),
                                "--executor", "local")
    assert result.returncode == 2 and "cifar_resnet20_gap" in result.stderr and str(wrong) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = run_cli_in_process("sweep", "run", str(write_sweep(tmp_path, MODELS + CORRUPTION, cifar=tmp_path / "no")),
                                "--out", str(tmp_path / "out"), "--executor", "local")
    assert result.returncode == 2 and f"missing corruption data: {tmp_path / 'no'}" in result.stderr
    assert not (tmp_path / "out").exists()


def _corruption(db: Path, shard=None, **changes) -> None:
    config = CorruptionEvalConfig(
        model="CIFAR10_ResNet20_GAP", data=shared_path("cifar10_test_jpg/test"),
        checkpoint=shared_path("cifar10_resnet_akamaster/resnet20-12fca82f.th"), corruptions=["gaussian_noise", "fog"],
        severities=[2], limit=40, workers=0, batch_size=16, chunk_size=16, db=db, shard=shard, **changes)
    evaluate_corruptions(config, progress=False)


@pytest.fixture(scope="module")
def shard_stores(tmp_path_factory) -> dict[str, Path]:
    """The same corruption run whole, and in two shards (two stores); a perturbation run too."""
    folder = tmp_path_factory.mktemp("shards")
    stores = {name: folder / f"{name}.sqlite" for name in ("whole", "first", "second")}
    _corruption(stores["whole"])
    _corruption(stores["first"], shard=(0, 2))
    _corruption(stores["second"], shard=(1, 2))
    for name, shard in (("whole", None), ("first", (0, 2)), ("second", (1, 2))):
        evaluate_perturbations(PerturbationEvalConfig(
            model="CIFAR10_ResNet20_GAP", data=shared_path("cifar10_test_jpg/test"),
            checkpoint=shared_path("cifar10_resnet_akamaster/resnet20-12fca82f.th"), perturbations=["brightness"],
            limit=6, workers=0, chunk_size=2, db=stores[name], shard=shard), progress=False)
    return stores


def test_shards_merge_into_the_cells_of_one_whole_run(shard_stores, tmp_path):
    assert stored_cells(shard_stores["first"]) == {}  # a shard stores parts only
    merged = tmp_path / "merged.sqlite"
    report = merge_stores([shard_stores["first"], shard_stores["second"]], merged)
    assert report.cells_from_parts == 4 and not report.unfinished  # clean, 2 corruptions, brightness
    assert stored_cells(merged) == stored_cells(shard_stores["whole"])  # counts and per-image masks
    result = run_cli_in_process("table", "--db", str(merged))
    assert result.returncode == 0 and "CIFAR10_ResNet20_GAP" in result.stdout


def test_merge_is_idempotent_and_one_shard_leaves_parts(shard_stores, tmp_path):
    merged = tmp_path / "merged.sqlite"
    merge_stores([shard_stores["first"]], merged)
    assert stored_cells(merged) == {} and sqlite3.connect(merged).execute("SELECT COUNT(*) FROM parts").fetchone()[0]
    merge_stores([shard_stores["second"]], merged)  # the other half, later: the cells are whole now
    assert stored_cells(merged) == stored_cells(shard_stores["whole"])
    before = merged.read_bytes()
    for _ in range(2):
        result = run_cli_in_process("merge", str(shard_stores["first"]), str(shard_stores["second"]),
                                    str(shard_stores["whole"]), "--db", str(merged))
        assert result.returncode == 0, result.stderr
        assert merged.read_bytes() == before  # byte for byte
    summary = [run_cli_in_process("table", "--db", str(merged), "--format", "csv").stdout for _ in range(2)]
    assert summary[0] == summary[1] == run_cli_in_process("table", "--db", str(shard_stores["whole"]),
                                                          "--format", "csv").stdout


def _tampered(source: Path, target: Path) -> Path:
    shutil.copy(source, target)
    db = sqlite3.connect(target)
    with db:
        changed = db.execute("UPDATE cells SET top1_errors = top1_errors + 1 WHERE name = 'fog'").rowcount
        changed += db.execute("UPDATE parts SET mask = zeroblob(length(mask)) WHERE name = 'fog'").rowcount
    db.close()
    assert changed
    return target


def test_conflicting_cells_are_refused_naming_both_files_and_the_target_stays(shard_stores, tmp_path):
    merged = tmp_path / "merged.sqlite"
    bad = _tampered(shard_stores["whole"], tmp_path / "tampered.sqlite")
    result = run_cli_in_process("merge", str(shard_stores["whole"]), str(bad), "--db", str(merged))
    assert result.returncode == 2 and str(shard_stores["whole"]) in result.stderr and str(bad) in result.stderr
    assert not merged.exists()
    merge_stores([shard_stores["whole"]], merged)
    before = merged.read_bytes()
    with pytest.raises(SweepError, match="differs between"):
        merge_stores([bad], merged)
    bad_shard = _tampered(shard_stores["first"], tmp_path / "tampered-shard.sqlite")
    with pytest.raises(SweepError, match="different outcomes for the same images"):
        merge_stores([shard_stores["first"], bad_shard], tmp_path / "other.sqlite")
    assert merged.read_bytes() == before and not (tmp_path / "other.sqlite").exists()


def test_a_merge_killed_inside_its_transaction_leaves_the_target_as_it_was(shard_stores, tmp_path):
    merged = tmp_path / "merged.sqlite"
    merge_stores([shard_stores["first"]], merged)
    before = stored_cells(merged), merged.read_bytes()
    marker = tmp_path / "in-transaction"
    # the merge process, with its commit held back until it is killed
    script = f"""
import sqlite3, time, pathlib
import robustbench_gcp.sweep.merge as merge
class Held:
    def __init__(self, db): self.db = db
    def __getattr__(self, name): return getattr(self.db, name)
    def commit(self):
        pathlib.Path({str(marker)!r}).touch()
        time.sleep(120)
real = sqlite3.connect
merge.sqlite3 = type("M", (), {{"connect": staticmethod(lambda *a, **k: Held(real(*a, **k))),
                                "DatabaseError": sqlite3.DatabaseError}})
merge.merge_stores([{str(shard_stores["second"])!r}], {str(merged)!r})
"""
    process = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 120
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), "the merge never reached its commit"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert stored_cells(merged) == before[0]
    assert merged.read_bytes() == before[1]
    merge_stores([shard_stores["second"]], merged)  # and the merge goes through afterwards
    assert stored_cells(merged) == stored_cells(shard_stores["whole"])


@pytest.mark.parametrize("options, message", [
    (["--poll", "nan"], "--poll nan"), (["--processes", "0"], "--processes 0"), (["--time", "0"], "--time 0"),
    (["--max-unit-minutes", "-5"], "--max-unit-minutes -5"), (["--sbatch", "account"], "--sbatch 'account'"),
])
def test_bad_run_options_are_one_line_and_submit_nothing(tmp_path, options, message):
    result = run_cli_in_process("sweep", "run", str(write_sweep(tmp_path, MODELS + CORRUPTION)), "--out",
                                str(tmp_path / "out"), "--executor", "local", *options)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_damaged_part_is_refused_by_the_resume_and_by_the_merge(shard_stores, tmp_path):
    from robustbench_gcp.results import ResultsError

    damaged = tmp_path / "damaged.sqlite"
    shutil.copy(shard_stores["first"], damaged)
    db = sqlite3.connect(damaged)
    with db:
        db.execute("UPDATE parts SET covered = x'ff' WHERE name = 'fog'")
    db.close()
    stored = damaged.read_bytes()
    with pytest.raises(ResultsError, match="do not fit its 40 images"):
        _corruption(damaged, shard=(0, 2))
    with pytest.raises(SweepError, match=f"{damaged}: a stored part of cell fog 2"):
        merge_stores([damaged, shard_stores["second"]], tmp_path / "merged.sqlite")
    assert damaged.read_bytes() == stored and not (tmp_path / "merged.sqlite").exists()


def test_a_shift_runs_parts_merge_each_at_its_own_size(tmp_path):
    """A shift run's clean set and shifted set differ in size: parts of each join into its cell."""
    import numpy as np
    from shift_trees import build_tree, build_val, photos_of

    from robustbench_gcp.results import CellPart, ResultStore
    from robustbench_gcp.summaries import pack_flags, unpack_flags

    tree = build_tree(tmp_path / "a", "imagenet-a", photos_of("imagenet-a", 6))
    val = build_val(tmp_path / "val", photos_of("imagenet-a", 10, skip=40))
    whole = tmp_path / "whole.sqlite"
    result = run_cli_in_process("eval-shift", "--model", "mobilenet_v2_gap", "--source", "imagenet-a", "--data",
                                str(tree), "--clean-data", str(val), "--db", str(whole), "--workers", "0", "--quiet")
    assert result.returncode == 0, result.stderr
    store = ResultStore(whole)
    (run,) = store.runs("shift")
    cells = store.cells(run)
    assert sorted(c.n for c in cells.values()) == [6, 10]
    shards = []
    for k in (0, 1):
        shard = ResultStore(tmp_path / f"shard{k}.sqlite")
        mine = shard.run("shift", run.model, run.config)
        for cell in cells.values():
            correct = unpack_flags(cell.mask)[:cell.n]
            covered = (np.arange(cell.n) % 2) == k
            shard.add_part(mine, CellPart(cell.name, cell.level, int(covered.sum()), int((covered & ~correct).sum()),
                                          cell.top5_errors if k == 0 else 0, 0, pack_flags(correct & covered),
                                          pack_flags(covered)))
        shards.append(shard.path)
    report = merge_stores(shards, tmp_path / "merged.sqlite")
    assert report.cells_from_parts == 2 and not report.unfinished
    merged = ResultStore(tmp_path / "merged.sqlite")
    joined = merged.cells(merged.runs("shift")[0])
    assert {key: (c.n, c.top1_errors, c.top5_errors, c.mask) for key, c in joined.items()} == {
        key: (c.n, c.top1_errors, c.top5_errors, c.mask) for key, c in cells.items()}
