"""Every bad input is one line on stderr, exit status 2, no traceback, and nothing written.

Most calls go through the real entry point in this process (``run_cli_in_process``: the same
parsing, errors and exit codes); a few run it as a subprocess, as a user does, to show that the
process itself prints one line and exits 2."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_cli_in_process as cli


def cli_subprocess(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robustbench_gcp.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def refused(result, *phrases: str) -> None:
    """Exit 2, one line on stderr that says what is wrong, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0])


@pytest.fixture
def eval_args(resnet20_file, cifar_test_dir) -> list[str]:
    return ["eval-corruption", "--model", "CIFAR10_ResNet20_GAP", "--checkpoint", str(resnet20_file),
            "--data", str(cifar_test_dir), "--corruptions", "contrast", "--severities", "1", "--limit", "20",
            "--workers", "0", "--quiet"]


def snapshot(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


@pytest.mark.parametrize("content", [b"this is a text file, not weights\n", "non-string keys"])
def test_checkpoint_that_is_not_one(tmp_path, content):
    path = tmp_path / "model.pth.tar"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save({"state_dict": {1: torch.zeros(2), 2: torch.ones(2)}}, path)
    refused(cli_subprocess("checkpoint", str(path)), str(path))
    refused(cli("checkpoint", str(path), "--model", "cifar_resnet20_gap"), str(path))


def test_db_that_is_a_directory_or_not_sqlite(tmp_path, eval_args):
    folder = tmp_path / "db-folder"
    folder.mkdir()
    refused(cli(*eval_args, "--db", str(folder)), "is a directory")
    assert list(folder.iterdir()) == []
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database at all, just some notes that happen to be long enough\n" * 20)
    before = snapshot(text)
    refused(cli_subprocess(*eval_args, "--db", str(text)), "not an SQLite results database")
    assert snapshot(text) == before


def test_db_of_another_application(tmp_path, eval_args):
    other = tmp_path / "app.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, started TEXT, athlete TEXT)")
        db.execute("INSERT INTO runs (started, athlete) VALUES ('2026-01-01', 'someone')")
    before = snapshot(other)
    refused(cli(*eval_args, "--db", str(other)), "another application's database")
    refused(cli("table", "--db", str(other)), "another application's database")
    assert snapshot(other) == before


def test_read_only_db(tmp_path, eval_args):
    db = tmp_path / "r.sqlite"
    first = cli(*eval_args, "--db", str(db))
    assert first.returncode == 0, first.stderr
    (tmp_path / "r.sqlite-wal").unlink(missing_ok=True)
    (tmp_path / "r.sqlite-shm").unlink(missing_ok=True)
    before = snapshot(db)
    immutable = subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode == 0
    if not immutable:
        if os.geteuid() == 0:
            pytest.skip("root writes through file modes and this filesystem has no immutable attribute")
        db.chmod(stat.S_IRUSR)
    try:
        refused(cli(*eval_args, "--severities", "2", "--db", str(db)), "cannot write")
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(db)], check=True)
        db.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert snapshot(db) == before


@pytest.mark.parametrize("extra, phrase", [
    (["--limit", "0"], "--limit 0"),
    (["--limit", "-3"], "--limit -3"),
    (["--corruptions", ","], "--corruptions selects no corruption"),
    (["--num-classes", "-1"], "--num-classes -1"),
    (["--severities", "0"], "severities"),
    (["--batch-size", "0"], "--batch-size 0"),
    (["--protocol", "imagenet-c"], "pass --protocol cifar10-c"),
])
def test_refused_eval_corruption_options_write_nothing(tmp_path, eval_args, extra, phrase):
    db = tmp_path / "r.sqlite"
    refused(cli(*eval_args, *extra, "--db", str(db)), phrase)
    assert not db.exists()


def test_json_or_plot_onto_a_directory(tmp_path, eval_args):
    db = tmp_path / "r.sqlite"
    refused(cli(*eval_args, "--db", str(db), "--json", str(tmp_path)), "is a directory")
    assert not db.exists()
    assert cli(*eval_args, "--db", str(db)).returncode == 0
    refused(cli("plot", "--db", str(db), "--out", str(tmp_path)), "is a directory")


def test_mixed_image_sizes_for_a_32_px_model(tmp_path, eval_args, cifar_test_dir):
    from conftest import copy_per_class
    from PIL import Image

    data = copy_per_class(cifar_test_dir, tmp_path / "mixed", 3)
    big = data / "cat" / "big.png"
    Image.new("RGB", (40, 48)).save(big)
    args = [a if a != str(cifar_test_dir) else str(data) for a in eval_args]
    db = tmp_path / "r.sqlite"
    refused(cli(*args, "--db", str(db)), str(big), "40×48")
    assert not db.exists()


def test_eps_that_overflows_and_unknown_values(tmp_path, cifar_test_dir):
    base = ["eval-attack", "--model", "cifar_resnet20_gap", "--data", str(cifar_test_dir), "--limit", "10",
            "--workers", "0", "--quiet", "--db", str(tmp_path / "r.sqlite")]
    refused(cli(*base, "--eps", "1e400"), "1e400")
    refused(cli(*base, "--eps", "nan"), "nan")
    refused(cli(*base, "--eps", "1/255", "--attacks", ""), "--attacks selects no attack")
    refused(cli(*base, "--eps", "1/255", "--num-classes", "-1"), "--num-classes -1")
    refused(cli(*base, "--eps", "1/255", "--steps", "-1"), "--steps -1")
    assert not (tmp_path / "r.sqlite").exists()


def test_l2_eps_may_exceed_1_up_to_the_diameter_of_the_image_box(tmp_path, cifar_test_dir, resnet20_file):
    from robustbench_gcp.attacks import AttackError, check_epsilons, parse_epsilons

    check_epsilons(parse_epsilons("0,2,55", norm="l2"), "l2", input_size=32)  # √(3·32·32) = 55.43
    with pytest.raises(AttackError, match=r"--eps 56 = 56 is outside \[0, 55.43\].*32×32-px images"):
        check_epsilons(parse_epsilons("56", norm="l2"), "l2", input_size=32)
    with pytest.raises(AttackError, match=r"--eps 2 = 2 is outside \[0, 1\]"):
        parse_epsilons("2")
    db = tmp_path / "r.sqlite"
    base = ["eval-attack", "--model", "CIFAR10_ResNet20_GAP", "--checkpoint", str(resnet20_file), "--data",
            str(cifar_test_dir), "--limit", "8", "--steps", "1", "--workers", "0", "--quiet", "--db", str(db)]
    refused(cli(*base, "--attacks", "linf-pgd", "--eps", "2"), "--eps 2", "outside [0, 1]")
    # a worst case over attacks of two norms would mean nothing (L∞ PGD at 0.1 against L2 AutoAttack at 0.1)
    refused(cli(*base, "--attacks", "linf-pgd,autoattack", "--norm", "l2", "--eps", "0,0.1"), "mixes threat models",
            "L∞: linf-pgd; L2: autoattack")
    refused(cli(*base, "--attacks", "l2-pgd,fgsm", "--eps", "0.1"), "mixes threat models")
    refused(cli(*base, "--attacks", "apgd-ce", "--norm", "l2", "--eps", "0,60"), "--eps 60", "outside [0, 55.43]")
    assert not db.exists()
    result = cli(*base, "--attacks", "l2-pgd", "--eps", "0,2")
    assert result.returncode == 0, result.stderr
    assert "eps 2" in result.stdout
    stored = db.read_bytes()  # the same run extended with an L∞ attack: refused before anything is written
    refused(cli(*base, "--attacks", "linf-pgd", "--eps", "0"), "holds attacks of another norm", "L2: l2-pgd")
    assert db.read_bytes() == stored


def test_corrupt_refuses_a_broken_jpeg_empty_lists_and_size_zero(tmp_path, cifar_test_dir):
    data = tmp_path / "data" / "cat"
    data.mkdir(parents=True)
    for path in sorted((cifar_test_dir / "cat").glob("*.jpg"))[:2]:
        (data / path.name).write_bytes(path.read_bytes())
    broken = data / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "out"
    base = ["corrupt", "--data", str(tmp_path / "data"), "--out", str(out), "--protocol", "cifar10-c",
            "--severities", "1", "--quiet"]
    refused(cli(*base, "--corruptions", ","), "--corruptions selects no corruption")
    refused(cli(*base, "--corruptions", "contrast", "--size", "0"), "--size 0")
    assert not out.exists()
    refused(cli(*base, "--corruptions", "contrast"), str(broken))


def test_train_refuses_zero_and_a_checkpoint_of_another_architecture(tmp_path, resnet44_file):
    base = ["train", "--model", "cifar_resnet20_gap", "--data", "builtin", "--out", str(tmp_path / "run"),
            "--workers", "0", "--quiet"]
    refused(cli(*base, "--epochs", "0"), "--epochs 0")
    refused(cli(*base, "--batch-size", "0"), "--batch-size 0")
    refused(cli(*base, "--num-classes", "-1"), "--num-classes -1")
    refused(cli(*base, "--resume", str(resnet44_file)), "does not fit architecture 'cifar_resnet20_gap'",
            "use --model cifar_resnet44_gap")


def test_compare_refuses_what_it_cannot_compare(tmp_path):
    corruption = {"model": "m", "clean_error": 10.0, "mCE": None, "relative_mCE": None, "mean_error": 20.0,
                  "errors": {"fog": [20.0, None, None, None, None]}}
    attack = {"model": "m", "clean_accuracy": 90.0, "robust_accuracy": {"linf-pgd": {"1/255": 50.0}},
              "worst_case": {"1/255": 50.0}}
    files = {
        "base": corruption,
        "list": [corruption],
        "attack": attack,
        "missing": {**corruption, "errors": {}},
        "nan": {**corruption, "clean_error": float("nan")},
        "text": {**corruption, "mean_error": "20.0"},
    }
    for name, content in files.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(content))
    path = {name: str(tmp_path / f"{name}.json") for name in files}
    assert cli("compare", path["base"], path["base"]).returncode == 0
    refused(cli("compare", path["base"], path["list"]), "JSON list")
    refused(cli("compare", path["base"], path["attack"]), "corruption summary", "attack summary")
    refused(cli("compare", path["base"], path["missing"]), "lacks 1 metric", "fog/1")
    refused(cli("compare", path["base"], path["nan"]), "NaN")
    refused(cli("compare", path["base"], path["text"]), "mean_error", "not a number")


def test_outputs_get_normal_permissions_and_plot_names_its_file(tmp_path, eval_args):
    db = tmp_path / "r.sqlite"
    summary = tmp_path / "s.json"
    old = os.umask(0o022)
    try:
        result = cli(*eval_args, "--db", str(db), "--json", str(summary))
        assert result.returncode == 0, result.stderr
        assert stat.S_IMODE(summary.stat().st_mode) == 0o644
        plot = cli("plot", "--db", str(db), "--out", str(tmp_path / "errors"))
    finally:
        os.umask(old)
    assert plot.returncode == 0, plot.stderr
    assert plot.stdout.strip() == f"wrote {tmp_path / 'errors.png'}" and (tmp_path / "errors.png").is_file()


def test_help_and_version_do_not_load_torch():
    code = ("import sys; from robustbench_gcp.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "eval-corruption" in result.stdout and "gcp-robust 0." in result.stdout


def test_every_option_has_help_and_shows_its_default():
    from robustbench_gcp.cli import build_parser

    parser = build_parser(None)
    subparsers = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict)).choices
    for name, sub in subparsers.items():
        for action in sub._actions:
            assert action.help, (name, action.dest)
        text = sub.format_help()
        for action in sub._actions:
            if action.default not in (None, False, [], "==SUPPRESS==") and action.option_strings:
                assert "(default:" in (sub._get_formatter()._get_help_string(action) or ""), (name, action.dest)
        assert "--help" in text
