"""Uncertainty of the numbers we report, with scipy underneath.

A cell's error rate or robust accuracy is a proportion: its interval is Wilson's score interval
(``scipy.stats.binomtest``). Aggregates over cells (mean error, mCE, relative mCE) depend on the
same images in every cell, so their intervals come from a seeded percentile bootstrap over images
(``scipy.stats.bootstrap``) that resamples the images once for all cells, keeping the pairing.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

DEFAULT_CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0  # fixed: a rerun gives the same interval, byte for byte


def proportion_interval(successes: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    """Wilson's interval of a proportion ``successes / n`` (as fractions)."""
    if n == 0:
        return (float("nan"), float("nan"))
    interval = stats.binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(interval.low), float(interval.high))


def bootstrap_interval(
    outcomes: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray],
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(rates)`` over images.

    ``outcomes`` is (cells, images), 1 where the image errs in the cell; every resample draws
    the images once for all cells. ``statistic`` maps per-cell rates (cells, resamples) to one
    value per resample.
    """
    outcomes = np.asarray(outcomes, dtype=np.float32)
    images = outcomes.shape[1]
    if images < 2:
        return (float("nan"), float("nan"))

    def per_resample(index: np.ndarray, axis: int = -1) -> np.ndarray:
        index = np.atleast_2d(index).astype(np.int64)  # (resamples in this batch, images)
        # how often each image was drawn, then one matrix product for every cell and resample
        draws = np.stack([np.bincount(row, minlength=images) for row in index], axis=1).astype(np.float32)
        return statistic(outcomes @ draws / images)  # rates: (cells, batch)

    result = stats.bootstrap(
        (np.arange(images),), per_resample, n_resamples=resamples, vectorized=True, batch=50,
        confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed),
    )
    return (float(result.confidence_interval.low), float(result.confidence_interval.high))


def mcnemar_exact(baseline_only: int, current_only: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test (p = 1/2) on the discordant pairs, the
    images right in one run and wrong in the other."""
    discordant = int(baseline_only) + int(current_only)
    if discordant == 0:
        return 1.0
    return float(stats.binomtest(int(baseline_only), discordant, 0.5).pvalue)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment: controls the chance of any false positive over all tests."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [1.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted
