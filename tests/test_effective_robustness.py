"""Effective robustness on synthetic (clean, shifted) accuracies with a known logit-linear trend:
models on the line measure 0 within their interval, a model above it measures a positive
distance; the trend is fitted over the store's models or given; pairs are paired."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import run_cli_in_process

from robustbench_gcp.corruptions import names
from robustbench_gcp.effective_robustness import EffectiveRobustness, Trend, TrendError, parse_trend
from robustbench_gcp.results import Cell, ResultStore
from robustbench_gcp.summaries import CLEAN, pack_flags

SLOPE, INTERCEPT = 1.2, -1.0
N_CLEAN, N_SHIFT = 2000, 1500


def on_line(clean: float) -> float:
    """The shifted accuracy the trend predicts."""
    x = math.log(clean / (1 - clean))
    return 1 / (1 + math.exp(-(SLOPE * x + INTERCEPT)))


def hits(correct: int, n: int, seed: int) -> np.ndarray:
    flags = np.zeros(n, dtype=bool)
    flags[np.random.default_rng(seed).permutation(n)[:correct]] = True
    return flags


def add_shift_run(store: ResultStore, model: str, clean: np.ndarray, shifted: np.ndarray, shift: str = "imagenet-r",
                  **identity):
    """A stored shift run whose clean and shifted sets have these per-image hits."""
    config = {**identity, "model": model, "shift": shift, "source": shift, "classes": 200, "dataset": f"/data/{shift}",
              "dataset_size": len(shifted), "clean": {"dataset": "/data/val", "size": len(clean),
                                                       "labels_sha256": None},
              "limit": None, "seed": 0, "fingerprint": "f", "input_size": 224, "model_classes": 1000}
    run = store.run("shift", model, config)
    for key, flags in ((CLEAN, clean), ((shift, "0"), shifted)):
        store.add_cell(run, Cell(*key, len(flags), int((~flags).sum()), int((~flags).sum()) // 2,
                                 mask=pack_flags(flags)))
    return run


def line_models(store: ResultStore, accuracies=(0.55, 0.65, 0.75, 0.85)) -> list:
    """Models exactly on the trend (to the nearest image)."""
    return [add_shift_run(store, f"model{i}", hits(round(a * N_CLEAN), N_CLEAN, i),
                          hits(round(on_line(a) * N_SHIFT), N_SHIFT, 100 + i)) for i, a in enumerate(accuracies)]


def test_a_given_trend_puts_models_on_it_at_zero_and_one_above_it_positive(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    runs = line_models(store, (0.6, 0.8))
    above = add_shift_run(store, "above", hits(round(0.7 * N_CLEAN), N_CLEAN, 7),
                          hits(round((on_line(0.7) + 0.08) * N_SHIFT), N_SHIFT, 8))
    effective = EffectiveRobustness(store, {"imagenet-r": Trend(SLOPE, INTERCEPT, "a paper")})
    for run in runs:  # two models are too few for a fit: the given trend is used
        estimate = effective.estimate(run, 0.95)
        assert abs(estimate.value) < 0.05 and estimate.interval[0] < 0 < estimate.interval[1], estimate
        assert estimate.trend.source == "a paper" and estimate.trend.fitted_on == ()
    estimate = effective.estimate(above, 0.95)
    assert estimate.value == pytest.approx(8.0, abs=0.05) and estimate.interval[0] > 0, estimate
    assert "1.200·logit(clean) − 1.000, a paper" in estimate.note


def test_the_trend_is_fitted_over_the_store_and_refitted_in_the_interval(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    runs = line_models(store)
    effective = EffectiveRobustness(store)
    estimates = [effective.estimate(run, 0.95) for run in runs]
    trend = estimates[0].trend
    assert trend.slope == pytest.approx(SLOPE, abs=0.01) and trend.intercept == pytest.approx(INTERCEPT, abs=0.01)
    assert trend.fitted_on == tuple(r.id for r in runs) and "fitted over 4 models in the store" in trend.source
    for estimate in estimates:
        assert abs(estimate.value) < 0.05 and estimate.interval[0] < 0 < estimate.interval[1], estimate
    # a model well above the line: positive, and the line refitted with it still leaves it above
    above = add_shift_run(store, "above", hits(round(0.7 * N_CLEAN), N_CLEAN, 7),
                          hits(round((on_line(0.7) + 0.10) * N_SHIFT), N_SHIFT, 8))
    estimate = EffectiveRobustness(store).estimate(above, 0.95)
    assert 5 < estimate.value < 10 and estimate.interval[0] > 0, estimate
    assert len(estimate.trend.fitted_on) == 5


def test_a_rerun_of_a_model_counts_once_and_too_few_models_give_no_trend(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    first = line_models(store, (0.6, 0.7))
    again = add_shift_run(store, "model0", hits(round(0.61 * N_CLEAN), N_CLEAN, 3), hits(500, N_SHIFT, 4),
                          precision="bf16")  # the same model run again: its newest run is its point
    estimate = EffectiveRobustness(store).estimate(first[0], 0.95)
    assert estimate.value is None and estimate.trend is None
    assert "only 2 models in the store" in estimate.note and "--trend imagenet-r=SLOPE,INTERCEPT" in estimate.note
    assert again.id != first[0].id


def test_the_gcp_minus_gap_difference_is_paired(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    line_models(store)
    clean = hits(round(0.7 * N_CLEAN), N_CLEAN, 11)
    gap_shift = hits(round(on_line(0.7) * N_SHIFT), N_SHIFT, 12)
    gcp_shift = gap_shift.copy()
    gcp_shift[np.flatnonzero(~gap_shift)[:60]] = True  # GCP gets 60 more shifted images right, 4 points
    gap = add_shift_run(store, "resnet50_gap", clean, gap_shift)
    gcp = add_shift_run(store, "resnet50_gcp", clean, gcp_shift)
    effective = EffectiveRobustness(store)
    delta, interval = effective.difference(gap, gcp, 0.95)
    assert delta == pytest.approx(4.0, abs=0.01) and interval[0] > 0
    apart = [effective.estimate(run, 0.95).interval for run in (gap, gcp)]
    assert interval[1] - interval[0] < min(high - low for low, high in apart)  # pairing removes the shared noise


def test_trend_parsing():
    shift, trend = parse_trend("imagenet-r=0.9,-1.6", ["imagenet-r"])
    assert (shift, trend.slope, trend.intercept) == ("imagenet-r", 0.9, -1.6)
    for bad in ("imagenet-r=0.9", "imagenet-r=a,b", "imagenet-r=nan,1", "objectnet=1,0"):
        with pytest.raises(TrendError):
            parse_trend(bad, ["imagenet-r"])


def add_corruption_run(store: ResultStore, model: str, seed: int):
    """A complete ImageNet-C run (15 × 5 cells and the clean one) of synthetic outcomes."""
    run = store.run("corruption", model, {"model": model, "input_size": 224, "model_classes": 1000, "seed": seed})
    rng = np.random.default_rng(seed)
    for key in [CLEAN, *((name, str(s)) for name in names("common") for s in range(1, 6))]:
        flags = rng.random(200) < (0.75 if key == CLEAN else 0.5)
        store.add_cell(run, Cell(*key, 200, int((~flags).sum()), 0, mask=pack_flags(flags)))
    return run


def test_table_shows_effective_robustness_next_to_relative_mce_and_takes_a_given_trend(tmp_path):
    db = tmp_path / "r.sqlite"
    store = ResultStore(db)
    line_models(store)
    add_corruption_run(store, "model0", 0)
    table = run_cli_in_process("table", "--db", str(db))
    assert table.returncode == 0, table.stderr
    assert "effective robustness (points)" in table.stdout and "fitted over 4 models in the store" in table.stdout
    header = next(line for line in table.stdout.splitlines() if "relative mCE" in line and "| model" in line)
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns[columns.index("relative mCE") + 1] == "ER imagenet-r"
    given = run_cli_in_process("table", "--db", str(db), "--trend", "imagenet-r=1.2,-1.0", "--format", "csv")
    assert given.returncode == 0, given.stderr
    rows = [line.split(",") for line in given.stdout.splitlines() if "effective_robustness" in line]
    assert len(rows) == 4 and all(abs(float(row[-1])) < 0.05 for row in rows)
    for bad in (["--trend", "imagenet-r=1"], ["--trend", "imagenet-r=1,0", "--trend", "imagenet-r=2,0"]):
        refused = run_cli_in_process("table", "--db", str(db), *bad)
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
