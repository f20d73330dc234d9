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
