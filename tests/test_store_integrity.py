"""Nothing silently wrong in the store and the gate: run ids are never reused, a writer whose run
is deleted stops, refused commands leave the store as it was, and the regression gate cannot be
switched off by a NaN or a negative threshold."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli_in_process

from robustbench_gcp.results import Cell, ResultStore


def _one_line(result, *phrases: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0])
    return lines[0]


def _rows(db: Path, query: str, *args) -> list:
    connection = sqlite3.connect(db)
    try:
        return connection.execute(query, args).fetchall()
    finally:
        connection.close()


def _written(db: Path) -> int:
    """Parts and cells stored so far (0 before the writer has made its tables)."""
    if not db.exists():
        return 0
    try:
        return _rows(db, "SELECT COUNT(*) FROM parts")[0][0] + _rows(db, "SELECT COUNT(*) FROM cells")[0][0]
    except sqlite3.OperationalError:
        return 0


def test_a_run_deleted_while_it_is_written_stops_its_writer_and_no_later_run_sees_its_cells(
        tmp_path, cifar_test_dir, resnet20_file):
    db, summary = tmp_path / "d.sqlite", tmp_path / "run.json"
    base = ["eval-corruption", "--model", "CIFAR10_ResNet20_GAP", "--checkpoint", str(resnet20_file), "--data",
            str(cifar_test_dir), "--batch-size", "20", "--chunk-size", "20", "--workers", "0", "--quiet",
            "--db", str(db)]
    writer = subprocess.Popen([sys.executable, "-m", "robustbench_gcp.cli", *base, "--limit", "500", "--corruptions",
                               "glass_blur,zoom_blur,fog", "--severities", "1,2,3,4,5", "--json", str(summary)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and writer.poll() is None:
        if _written(db):
            break
        time.sleep(0.05)
    assert writer.poll() is None, "the writer finished before its run could be deleted"
    deleted = run_cli_in_process("runs", "--db", str(db), "--delete", "1")
    assert deleted.returncode == 0, deleted.stderr
    _, stderr = writer.communicate(timeout=600)
    assert writer.returncode == 2 and "run 1 was deleted" in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not summary.exists()
    assert _rows(db, "SELECT COUNT(*) FROM cells WHERE run_id = 1") == [(0,)]
    assert _rows(db, "SELECT COUNT(*) FROM parts WHERE run_id = 1") == [(0,)]
    # the next, different run gets a new id and only its own cells
    later = run_cli_in_process(*base, "--limit", "20", "--corruptions", "glass_blur", "--severities", "1")
    assert later.returncode == 0, later.stderr
    assert _rows(db, "SELECT id FROM runs") == [(2,)]
    assert {n for (n,) in _rows(db, "SELECT n FROM cells")} == {20}


def test_a_database_from_before_gets_run_ids_that_are_never_reused(tmp_path):
    db = tmp_path / "old.sqlite"
    connection = sqlite3.connect(db)
    with connection:  # the schema of earlier versions: ids reusable, no foreign keys
        connection.executescript("""
            CREATE TABLE runs (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
                               model TEXT NOT NULL, config TEXT NOT NULL, created TEXT NOT NULL DEFAULT '');
            CREATE TABLE cells (run_id INTEGER NOT NULL REFERENCES runs(id), name TEXT NOT NULL, level TEXT NOT NULL,
                                n INTEGER NOT NULL, top1_errors INTEGER NOT NULL, top5_errors INTEGER NOT NULL,
                                skipped INTEGER NOT NULL DEFAULT 0, mask BLOB, PRIMARY KEY (run_id, name, level));
            INSERT INTO runs (id, key, kind, model, config) VALUES (1, 'a', 'corruption', 'm', '{}'),
                                                                   (2, 'b', 'corruption', 'm', '{}');
            INSERT INTO cells VALUES (1, 'fog', '1', 10, 3, 1, 0, NULL), (3, 'fog', '1', 99, 9, 9, 0, NULL);
        """)
    connection.close()
    store = ResultStore(db)
    assert [r.id for r in store.runs()] == [1, 2]
    assert _rows(db, "SELECT run_id, n FROM cells") == [(1, 10)]  # the orphan of a deleted run 3 is gone
    assert store.delete("2") == [(2, None, 0)]
    fresh = store.run("corruption", "m", {"other": True})
    assert fresh.id == 4  # neither 2 (deleted) nor 3 (the orphan's)
    store.add_cell(fresh, Cell("fog", "1", 5, 1, 0))
    assert store.cells(fresh)[("fog", "1")].n == 5


@pytest.mark.parametrize("options, phrase", [
    (["--max-increase", "nan", "--fail-on-regression"], "--max-increase nan"),
    (["--max-increase", "-1"], "--max-increase -1"),
    (["--max-increase", "inf"], "--max-increase inf"),
    (["--alpha", "nan"], "--alpha nan"),
    (["--alpha", "1"], "--alpha 1"),
])
def test_the_gate_cannot_be_switched_off(tmp_path, options, phrase):
    base, current = tmp_path / "a.json", tmp_path / "b.json"
    base.write_text("{}")
    current.write_text("{}")
    _one_line(run_cli_in_process("compare", str(base), str(current), *options), phrase)


def test_table_refuses_a_meaningless_alpha_before_reading_the_store(tmp_path):
    _one_line(run_cli_in_process("table", "--db", str(tmp_path / "none.sqlite"), "--alpha", "1.5"), "--alpha 1.5")
    assert not (tmp_path / "none.sqlite").exists()


def test_negative_budgets_and_queries_are_refused_with_a_reason(tmp_path, cifar_test_dir):
    base = ["eval-attack", "--model", "CIFAR10_ResNet20_GAP", "--data", str(cifar_test_dir), "--db",
            str(tmp_path / "r.sqlite")]
    _one_line(run_cli_in_process(*base, "--attacks", "linf-pgd", "--eps", "-1/255"), "--eps -1/255", "outside")
    _one_line(run_cli_in_process(*base, "--attacks", "linf-pgd", "--eps", "-1e-3"), "--eps -1e-3", "outside")
    _one_line(run_cli_in_process(*base, "--attacks", "linf-pgd", "--eps", "1/255", "--queries", "-1"),
              "--queries -1")
    assert not (tmp_path / "r.sqlite").exists()


def test_a_refused_baseline_leaves_the_store_as_it_was(tmp_path, cifar_test_dir, resnet20_file):
    db = tmp_path / "p.sqlite"
    base = ["eval-perturbation", "--model", "CIFAR10_ResNet20_GAP", "--checkpoint", str(resnet20_file), "--data",
            str(cifar_test_dir), "--perturbations", "brightness", "--limit", "2", "--workers", "0", "--quiet"]
    _one_line(run_cli_in_process(*base, "--db", str(db), "--baseline-run", "alexnet"), "does not exist")
    assert not db.exists()
    assert run_cli_in_process(*base, "--db", str(db)).returncode == 0
    stored = db.read_bytes()
    _one_line(run_cli_in_process(*base, "--db", str(db), "--limit", "3", "--baseline-run", "nosuchrun", "--name",
                                 "NEW"), "nosuchrun")
    assert db.read_bytes() == stored
    assert [r.name for r in ResultStore(db).runs()] == [None]


def test_autoattack_refused_for_too_few_classes_creates_no_store(tmp_path, cifar_test_dir):
    from conftest import copy_per_class

    few = tmp_path / "five"
    copy_per_class(cifar_test_dir, tmp_path / "all", 2)
    few.mkdir()
    for folder in sorted((tmp_path / "all").iterdir())[:5]:
        folder.rename(few / folder.name)
    db = tmp_path / "r.sqlite"
    _one_line(run_cli_in_process("eval-attack", "--model", "cifar_resnet20_gap", "--num-classes", "5", "--data",
                                 str(few), "--attacks", "autoattack", "--eps", "8/255", "--db", str(db)),
              "apgd-t")
    assert not db.exists()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux's /proc, where no one can create files")
def test_an_unwritable_json_is_refused_before_the_run(tmp_path, cifar_test_dir, resnet20_file):
    target = Path("/proc/gcp-robust-run.json")  # no one, root included, creates files there
    result = run_cli_in_process("eval-corruption", "--model", "CIFAR10_ResNet20_GAP", "--checkpoint",
                                str(resnet20_file), "--data", str(cifar_test_dir), "--limit", "8", "--db",
                                str(tmp_path / "r.sqlite"), "--json", str(target))
    _one_line(result, f"--json {target}", "cannot write into /proc")
    assert not (tmp_path / "r.sqlite").exists()
