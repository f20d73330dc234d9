"""Intervals that cover at their stated rate, and per-image outcomes stored for every cell."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from robustbench_gcp.corruptions import names
from robustbench_gcp.metrics import ALEXNET_ERRORS, mce
from robustbench_gcp.results import Cell, ResultStore
from robustbench_gcp.statistics import bootstrap_interval, proportion_interval
from robustbench_gcp.summaries import pack_flags, summarize_corruptions, unpack_flags


def test_wilson_interval_is_scipys_and_covers_at_its_rate():
    interval = stats.binomtest(37, 200).proportion_ci(confidence_level=0.95, method="wilson")
    assert proportion_interval(37, 200) == (pytest.approx(interval.low), pytest.approx(interval.high))
    # the stored bounds (percent, 4 decimals) are scipy's exactly, at every count of small n and at large n
    cases = [(k, n, 0.95) for n in range(1, 40) for k in range(n + 1)]
    cases += [(k, n, 0.95) for n in (1000, 10_000, 50_000) for k in range(0, n + 1, n // 200)]
    cases += [(k, 500, 0.99) for k in range(0, 501, 5)]
    for k, n, confidence in cases:
        ours = [round(100 * bound, 4) for bound in proportion_interval(k, n, confidence)]
        theirs = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
        assert ours == [round(100 * theirs.low, 4), round(100 * theirs.high, 4)], (k, n, confidence)
    rng = np.random.default_rng(0)
    truth, n = 0.23, 400
    draws = rng.binomial(n, truth, size=2000)
    covered = np.mean([low <= truth <= high for low, high in (proportion_interval(k, n) for k in draws)])
    assert 0.93 <= covered <= 0.97, covered


def _population(size: int, rng: np.random.Generator) -> np.ndarray:
    """Errors (75 cells × images) with a shared per-image difficulty, as real corruption cells have."""
    alexnet = np.array([ALEXNET_ERRORS[n] for n in names("common")]).reshape(-1)
    difficulty = rng.random(size)
    noise = rng.random((75, size))
    return (0.6 * difficulty + 0.4 * noise) < (alexnet[:, None] * 0.5)


def _mce(rates: np.ndarray) -> np.ndarray:
    common = names("common")
    return mce({n: [rates[5 * i + s] for s in range(5)] for i, n in enumerate(common)})


def test_bootstrap_of_mce_covers_the_population_value():
    rng = np.random.default_rng(1)
    population = _population(20_000, rng)
    truth = float(_mce(population.mean(axis=1)))
    hits = []
    for simulation in range(120):
        sample = population[:, rng.integers(0, population.shape[1], 400)]
        low, high = bootstrap_interval(sample, _mce, resamples=400, seed=simulation)
        hits.append(low <= truth <= high)
    assert 0.89 <= np.mean(hits) <= 0.99, np.mean(hits)


def test_bootstrap_is_seeded_and_keeps_images_paired():
    rng = np.random.default_rng(2)
    outcomes = rng.random((2, 300)) < 0.3
    same = np.vstack([outcomes[0], outcomes[0]])  # two identical cells: their difference never varies
    assert bootstrap_interval(same, lambda r: r[0] - r[1]) == (0.0, 0.0)
    assert bootstrap_interval(outcomes, lambda r: r.mean(0)) == bootstrap_interval(outcomes, lambda r: r.mean(0))


def test_summary_intervals_and_databases_without_outcomes(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    rng = np.random.default_rng(3)
    correct = {key: rng.random(50) < 0.7 for key in (("clean", "0"), ("fog", "1"), ("fog", "3"))}
    with_masks = store.run("corruption", "m", {"source": "generated", "input_size": 32, "model_classes": 10})
    without = store.run("corruption", "m", {"source": "generated", "seed": 1, "input_size": 32, "model_classes": 10})
    for (name, level), flags in correct.items():
        store.add_cell(with_masks, Cell(name, level, 50, int((~flags).sum()), 0, mask=pack_flags(flags)))
        store.add_cell(without, Cell(name, level, 50, int((~flags).sum()), 0))
    full = summarize_corruptions(with_masks, store.cells(with_masks), ["fog"])
    low, high = full["mean_error_ci"]
    assert low < full["mean_error"] < high
    assert full["errors_ci"]["fog"][1] is None and full["errors_ci"]["fog"][0][0] < full["errors"]["fog"][0]
    old = summarize_corruptions(without, store.cells(without), ["fog"])
    assert old["mean_error_ci"] is None and old["clean_error_ci"] == full["clean_error_ci"]
    assert (unpack_flags(store.cells(with_masks)["fog", "1"].mask)[:50] == correct["fog", "1"]).all()


def test_mcnemar_is_the_exact_binomial_test_of_the_discordant_pairs():
    from robustbench_gcp.statistics import holm, mcnemar_exact

    for b, c in ((12, 3), (0, 9), (40, 41), (0, 0)):
        expected = stats.binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
        assert mcnemar_exact(b, c) == pytest.approx(expected)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def _paired_runs(tmp_path, flips: tuple[int, int]):
    """Two stored runs over the same 2,000 images: ``flips`` = (right → wrong, wrong → right)."""
    rng = np.random.default_rng(4)
    store = ResultStore(tmp_path / "paired.sqlite")
    base = rng.random(2000) < 0.8
    current = base.copy()
    right, wrong = np.flatnonzero(base), np.flatnonzero(~base)
    current[rng.choice(right, flips[0], replace=False)] = False
    current[rng.choice(wrong, flips[1], replace=False)] = True
    runs = []
    for seed, hits in ((0, base), (1, current)):
        run = store.run("corruption", f"model{seed}", {"dataset": "d", "dataset_size": 2000, "limit": None,
                                                       "seed": seed, "input_size": 32, "model_classes": 10})
        store.add_cell(run, Cell("fog", "3", 2000, int((~hits).sum()), 0, mask=pack_flags(hits)))
        runs.append(run)
    return store, runs


@pytest.mark.parametrize("flips, significant", [((70, 10), True), ((10, 6), False)])
def test_a_planted_difference_is_significant_only_when_real(tmp_path, flips, significant):
    from robustbench_gcp.comparison import compare_runs

    store, (base, current) = _paired_runs(tmp_path, flips)
    comparison = compare_runs(store, base, current, ("a", "b"))
    cell = next(d for d in comparison.differences if d.metric == "fog/3")
    assert comparison.paired and cell.worse_by == pytest.approx(100 * (flips[0] - flips[1]) / 2000)
    assert cell.significant is significant and cell.p_value == pytest.approx(stats.binomtest(*flips[:1],
                                                                                             sum(flips)).pvalue)
    mean = next(d for d in comparison.differences if d.metric == "mean_error")
    assert mean.interval is not None and (mean.interval[0] > 0) is significant


def test_fail_on_regression_gates_on_real_regressions_only(tmp_path, cifar_test_dir, resnet20_file):
    from conftest import copy_per_class
    from conftest import run_cli_in_process as cli

    data = copy_per_class(cifar_test_dir, tmp_path / "data", 30)
    db = str(tmp_path / "r.sqlite")
    base = ["eval-corruption", "--data", str(data), "--corruptions", "gaussian_noise,contrast", "--severities", "3,5",
            "--workers", "0", "--quiet", "--db", db]
    trained = ["--model", "CIFAR10_ResNet20_GAP", "--checkpoint", str(resnet20_file)]
    for seed in ("0", "1"):
        assert cli(*base, *trained, "--seed", seed, "--name", f"seed{seed}").returncode == 0
    assert cli(*base, "--model", "cifar_resnet20_gap", "--name", "untrained").returncode == 0
    same = cli("compare", "--db", db, "--run", "seed0", "--run", "seed1", "--fail-on-regression",
               "--max-increase", "0.5")
    assert same.returncode == 0, same.stdout
    assert "paired over the same 300 images" in same.stdout
    worse = cli("compare", "--db", db, "--run", "seed0", "--run", "untrained", "--fail-on-regression")
    assert worse.returncode == 1 and "significantly worse" in worse.stdout and "WORSE, significant" in worse.stdout


def test_compare_formats_say_the_same(tmp_path):
    import json
    from xml.etree import ElementTree

    from conftest import run_cli_in_process as cli

    store, _ = _paired_runs(tmp_path, (70, 10))
    db = str(tmp_path / "paired.sqlite")
    args = ["compare", "--db", db, "--run", "1", "--run", "2", "--fail-on-regression"]
    markdown, as_json, junit = (cli(*args, "--format", f) for f in ("markdown", "json", "junit"))
    assert markdown.returncode == as_json.returncode == junit.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["paired"] and report["regressions"] == ["fog/3", "mean_error"]
    suite = ElementTree.fromstring(junit.stdout.split("?>", 1)[1])
    failed = [case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None]
    assert sorted(failed) == report["regressions"] and suite.get("failures") == "2"
    for entry in report["differences"]:
        assert f"| {entry['metric']}" in markdown.stdout and f"{entry['worse_by']:.2f}" in markdown.stdout


def test_table_puts_each_gap_model_next_to_its_gcp_twin(tmp_path, cifar_test_dir, resnet20_file):
    from conftest import copy_per_class
    from conftest import run_cli_in_process as cli

    data = copy_per_class(cifar_test_dir, tmp_path / "data", 20)
    db = str(tmp_path / "r.sqlite")
    for model in (["--model", "CIFAR10_ResNet20_GAP", "--checkpoint", str(resnet20_file)],
                  ["--model", "cifar_resnet20_gcp"]):  # GCP with random weights: far worse
        common = [*model, "--data", str(data), "--workers", "0", "--quiet", "--db", db]
        assert cli("eval-corruption", *common, "--corruptions", "contrast,fog", "--severities", "1,5").returncode == 0
        assert cli("eval-attack", *common, "--eps", "0,1/255", "--steps", "2").returncode == 0
    table = cli("table", "--db", db, "--pairs")
    assert table.returncode == 0, table.stderr
    header = table.stdout.splitlines()[0]
    assert header.index("CIFAR10_ResNet20_GAP") < header.index("cifar_resnet20_gcp") < header.index("Δ GCP − GAP")
    clean = next(line for line in table.stdout.splitlines() if line.startswith("| clean error"))
    delta = clean.rstrip(" |").rsplit("|", 1)[1].strip()
    assert delta.startswith("+") and delta.endswith("*"), clean  # worse, and significantly so
    assert "Δ GCP − GAP | -" in table.stdout.replace("  ", "") or "| Δ GCP − GAP" in table.stdout
    assert "McNemar" in table.stdout


def test_paired_interval_of_the_mean_fp_covers_what_the_mean_covers(tmp_path):
    """The mean FP shown averages the test perturbations only, and so must its paired interval:
    two runs that differ only in a validation perturbation have the same mean FP, and an
    interval of 0 around it (not a significant change)."""
    from robustbench_gcp.comparison import compare_runs
    from robustbench_gcp.stability import TEST_PERTURBATIONS, VALIDATION_PERTURBATIONS, counts_to_bytes

    store = ResultStore(tmp_path / "p.sqlite")
    common = {"dataset": "/data/p", "dataset_size": 40, "source": "released", "protocol": "imagenet-p", "limit": None}
    runs = [store.run("perturbation", "m", {**common, "checkpoint_sha256": sha}) for sha in ("a", "b")]
    flips = np.random.default_rng(0).integers(0, 10, size=(len(TEST_PERTURBATIONS["imagenet-p"]), 40))
    for k, run in enumerate(runs):
        for name, row in zip(TEST_PERTURBATIONS["imagenet-p"], flips):
            counts = np.stack([row, row, np.full(40, 30)], axis=1)
            store.add_cell(run, Cell(name, "1", 40, 0, 0, mask=counts_to_bytes(counts)))
        validation = np.stack([np.full(40, 3 + 20 * k), np.zeros(40), np.full(40, 30)], axis=1)
        store.add_cell(run, Cell(VALIDATION_PERTURBATIONS["imagenet-p"][0], "1", 40, 0, 0,
                                 mask=counts_to_bytes(validation)))
    comparison = compare_runs(store, *runs, ("a", "b"))
    mean = next(d for d in comparison.differences if d.metric == "mean FP/1")
    assert mean.worse_by == 0 and mean.interval == (0.0, 0.0) and not mean.significant
    changed = f"FP {VALIDATION_PERTURBATIONS['imagenet-p'][0]}/1"
    validation = next(d for d in comparison.differences if d.metric == changed)
    assert validation.worse_by > 50 and validation.significant  # the validation perturbation's own change is seen


def test_a_difference_reads_as_current_minus_baseline_whichever_way_its_metric_points():
    """``worse_by`` is signed by the metric's direction; ``change`` undoes it for tables and reports."""
    from robustbench_gcp.comparison import compare

    def attack_summary(clean: float, robust: float) -> dict:
        return {"clean_accuracy": clean, "clean_accuracy_ci": [clean - 1, clean + 1],
                "robust_accuracy": {"pgd": {"1/255": robust}}}

    attack = compare(attack_summary(90.0, 40.0), attack_summary(88.0, 45.0))
    accuracy, robust = attack.by_metric()["clean_accuracy"], attack.by_metric()["pgd@1/255"]
    assert (accuracy.worse_by, accuracy.change, robust.worse_by, robust.change) == (2.0, -2.0, -5.0, 5.0)
    assert accuracy.change_interval == tuple(sorted(-bound for bound in accuracy.interval))
    error = compare({"clean_error": 10.0, "errors": {"fog": [20.0] * 5}},
                    {"clean_error": 12.0, "errors": {"fog": [19.0] * 5}}).by_metric()
    assert (error["clean_error"].change, error["fog/1"].change, error["fog/1"].change_interval) == (2.0, -1.0, None)
