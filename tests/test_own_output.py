"""A command's output (terminal and --json) covers the cells it asked for; the other cells of the
same run identity stay in the store and show in `table`."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli_in_process


def _run(*args: str):
    result = run_cli_in_process(*args)
    assert result.returncode == 0, result.stderr
    return result


def test_each_command_reports_what_it_asked_for_and_table_shows_everything(tmp_path, cifar_test_dir, resnet20_file):
    db = str(tmp_path / "r.sqlite")
    model = ["--model", "CIFAR10_ResNet20_GAP", "--checkpoint", str(resnet20_file), "--data", str(cifar_test_dir),
             "--workers", "0", "--quiet", "--db", db]
    corruption = ["eval-corruption", *model, "--limit", "40", "--severities", "1,2"]
    _run(*corruption, "--corruptions", "glass_blur")
    second = _run(*corruption, "--corruptions", "motion_blur", "--json", str(tmp_path / "mb.json"))
    summary = json.loads((tmp_path / "mb.json").read_text())
    assert list(summary["errors"]) == ["motion_blur"]
    ran = [e for e in summary["errors"]["motion_blur"] if e is not None]
    assert len(ran) == 2 and summary["mean_error"] == pytest.approx(sum(ran) / 2, abs=1e-3)  # glass_blur left out
    assert "motion_blur" in second.stdout and "glass_blur" not in second.stdout

    attack = ["eval-attack", *model, "--limit", "16", "--attacks", "linf-pgd", "--steps", "2"]
    _run(*attack, "--eps", "1/255")
    second = _run(*attack, "--eps", "2/255", "--json", str(tmp_path / "pgd.json"))
    summary = json.loads((tmp_path / "pgd.json").read_text())
    assert list(summary["robust_accuracy"]["linf-pgd"]) == ["2/255"] and list(summary["worst_case"]) == ["2/255"]
    assert "eps 2/255" in second.stdout and "eps 1/255" not in second.stdout

    perturbation = ["eval-perturbation", *model, "--limit", "4"]
    _run(*perturbation, "--perturbations", "brightness")
    second = _run(*perturbation, "--perturbations", "rotate", "--json", str(tmp_path / "p.json"))
    summary = json.loads((tmp_path / "p.json").read_text())
    assert list(summary["flip_probability"]) == ["rotate"]
    assert "rotate" in second.stdout and "brightness" not in second.stdout

    table = _run("table", "--db", db).stdout
    for name in ("glass_blur", "motion_blur", "eps 1/255", "eps 2/255", "brightness", "rotate"):
        assert name in table, name


def test_warnings_are_one_line_without_a_source_location(tmp_path, cifar_test_dir):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "robustbench_gcp.cli", "eval-corruption", "--model",
                           "cifar_resnet20_gap", "--data", str(cifar_test_dir), "--limit", "10", "--corruptions", "fog",
                           "--severities", "1", "--workers", "0", "--quiet", "--db", str(tmp_path / "r.sqlite")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["gcp-robust eval-corruption: warning: no --checkpoint given: evaluating "
                                        "cifar_resnet20_gap with random weights (seed 0)"]


def test_intervals_print_their_stored_bounds_exactly(tmp_path, cifar_test_dir, resnet20_file):
    db = str(tmp_path / "r.sqlite")
    _run("eval-attack", "--model", "CIFAR10_ResNet20_GAP", "--checkpoint", str(resnet20_file), "--data",
         str(cifar_test_dir), "--workers", "0", "--quiet", "--db", db, "--limit", "12", "--attacks", "linf-pgd",
         "--steps", "2", "--eps", "8/255", "--json", str(tmp_path / "a.json"))
    summary = json.loads((tmp_path / "a.json").read_text())
    table = _run("table", "--db", db).stdout
    low, high = summary["robust_accuracy_ci"]["linf-pgd"]["8/255"]
    value = summary["robust_accuracy"]["linf-pgd"]["8/255"]
    assert f"{value:.2f} [{low:.2f}, {high:.2f}]" in table
    low, high = summary["clean_accuracy_ci"]
    assert f"{summary['clean_accuracy']:.2f} [{low:.2f}, {high:.2f}]" in table and "±" not in table


def test_pairs_without_a_twin_says_so(tmp_path, cifar_test_dir, resnet20_file):
    db = str(tmp_path / "r.sqlite")
    _run("eval-corruption", "--model", "CIFAR10_ResNet20_GAP", "--checkpoint", str(resnet20_file), "--data",
         str(cifar_test_dir), "--workers", "0", "--quiet", "--db", db, "--limit", "10", "--corruptions", "fog",
         "--severities", "1")
    table = _run("table", "--db", db, "--pairs").stdout
    assert "--pairs: no GAP/GCP twins among these runs" in table


def test_every_subcommand_help_answers_without_importing_torch():
    import subprocess
    import sys

    from robustbench_gcp.cli import COMMANDS

    script = ("import sys, contextlib, io\nfrom robustbench_gcp.cli import main\nfor command in sys.argv[1:]:\n"
              "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
              "        main([command, '--help'])\nprint(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    done = subprocess.run([sys.executable, "-c", script, *(c.name for c in COMMANDS)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_the_option_values_are_the_packages_own():
    from robustbench_gcp import choices
    from robustbench_gcp.attacks.registry import ATTACK_NAMES

    assert choices.ATTACK_NAMES == ATTACK_NAMES


def test_comparing_two_json_summaries_shows_no_empty_p_value_column(tmp_path, cifar_test_dir, resnet20_file):
    for seed in ("0", "1"):
        _run("eval-corruption", "--model", "CIFAR10_ResNet20_GAP", "--checkpoint", str(resnet20_file), "--data",
             str(cifar_test_dir), "--workers", "0", "--quiet", "--db", str(tmp_path / "r.sqlite"), "--limit", "10",
             "--corruptions", "fog", "--severities", "1", "--seed", seed, "--json", str(tmp_path / f"{seed}.json"))
    result = run_cli_in_process("compare", str(tmp_path / "0.json"), str(tmp_path / "1.json"))
    assert "interval of it" in result.stdout and "McNemar" not in result.stdout.split("\n\n")[0], result.stdout


def test_plots_show_interval_bands_and_the_clean_error(tmp_path, cifar_test_dir, resnet20_file, monkeypatch):
    from matplotlib.collections import PolyCollection

    import robustbench_gcp.report.plots as plots
    from robustbench_gcp.results import ResultStore

    db = str(tmp_path / "r.sqlite")
    model = ["--model", "CIFAR10_ResNet20_GAP", "--checkpoint", str(resnet20_file), "--data", str(cifar_test_dir),
             "--workers", "0", "--quiet", "--db", db, "--limit", "12"]
    _run("eval-corruption", *model, "--corruptions", "fog", "--severities", "1,2")
    _run("eval-attack", *model, "--attacks", "linf-pgd", "--steps", "1", "--eps", "0,1/255,2/255")
    figures = []
    monkeypatch.setattr(plots, "_save", lambda plt, figure, out: figures.append(figure) or out)
    store = ResultStore(db)
    plots.plot_corruptions(store, store.runs("corruption"), tmp_path / "c.png")
    plots.plot_attacks(store, store.runs("attack"), tmp_path / "a.png")
    corruption, attack = (figure.axes[0] for figure in figures)
    assert any(isinstance(c, PolyCollection) for c in corruption.collections)
    assert any(line.get_linestyle() == "--" for line in corruption.get_lines())  # the clean error
    assert any(isinstance(c, PolyCollection) for c in attack.collections)


def test_attack_tables_do_not_repeat_the_clean_column_as_eps_0(tmp_path, cifar_test_dir, resnet20_file):
    db = str(tmp_path / "r.sqlite")
    _run("eval-attack", "--model", "CIFAR10_ResNet20_GAP", "--checkpoint", str(resnet20_file), "--data",
         str(cifar_test_dir), "--workers", "0", "--quiet", "--db", db, "--limit", "8", "--attacks", "linf-pgd",
         "--steps", "1", "--eps", "0,1/255")
    table = _run("table", "--db", db).stdout
    assert "| clean" in table and "eps 1/255" in table and "eps 0 " not in table and "eps 0|" not in table


def test_threads_sets_torchs_threads_and_refuses_zero(tmp_path, cifar_test_dir):
    import torch

    before = torch.get_num_threads()
    try:
        _run("eval-corruption", "--model", "cifar_resnet20_gap", "--data", str(cifar_test_dir), "--limit", "4",
             "--corruptions", "fog", "--severities", "1", "--workers", "0", "--quiet", "--threads", "1", "--db",
             str(tmp_path / "r.sqlite"))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    refused = run_cli_in_process("demo", "--threads", "0", "--out", str(tmp_path / "demo"))
    assert refused.returncode == 2 and "--threads 0" in refused.stderr
