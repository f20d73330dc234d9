"""mCE, relative mCE and mean error on hand-computed values."""

from __future__ import annotations

import pytest

from robustbench_gcp.corruptions import names
from robustbench_gcp.metrics import (
    ALEXNET_CLEAN_ERROR,
    ALEXNET_ERRORS,
    corruption_error,
    mce,
    mean_error,
    relative_corruption_error,
    relative_mce,
)


def test_alexnet_scores_100():
    errors = {name: ALEXNET_ERRORS[name] for name in names("common")}
    assert mce(errors) == pytest.approx(100.0)
    assert relative_mce(errors, ALEXNET_CLEAN_ERROR) == pytest.approx(100.0)


def test_alexnet_table_averages_match_the_published_ones():
    published = {"gaussian_noise": 0.886428, "zoom_blur": 0.798360, "jpeg_compression": 0.606500, "saturate": 0.658248}
    for name, average in published.items():
        assert sum(ALEXNET_ERRORS[name]) / 5 == pytest.approx(average, abs=1e-6)


def test_hand_computed_ce_and_relative_ce():
    rates = [0.1, 0.2, 0.3, 0.4, 0.5]
    alexnet = 0.45140 + 0.48502 + 0.54048 + 0.62166 + 0.72440
    assert corruption_error("brightness", rates) == pytest.approx(100 * 1.5 / alexnet)
    expected = 100 * (1.5 - 5 * 0.05) / (sum(ALEXNET_ERRORS["brightness"]) - 5 * ALEXNET_CLEAN_ERROR)
    assert relative_corruption_error("brightness", rates, 0.05) == pytest.approx(expected)


def test_half_of_alexnet_everywhere_gives_mce_50():
    errors = {name: [r / 2 for r in ALEXNET_ERRORS[name]] for name in names("common")}
    assert mce(errors) == pytest.approx(50.0)
    assert mean_error({"gaussian_noise": [0.2, 0.4, 0.6, 0.8, 1.0]}) == pytest.approx(60.0)


def test_extras_do_not_count_and_missing_corruptions_are_an_error():
    errors = {name: ALEXNET_ERRORS[name] for name in names("common")}
    errors["spatter"] = (1.0,) * 5
    assert mce(errors) == pytest.approx(100.0)
    del errors["fog"]
    with pytest.raises(ValueError, match="missing: fog"):
        mce(errors)
