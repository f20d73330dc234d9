"""Uncertainty of the numbers we report, with scipy underneath.

A cell's error rate or robust accuracy is a proportion: its interval is Wilson's score interval
(``scipy.stats.binomtest``). Aggregates over cells (mean error, mCE, relative mCE) depend on the
same images in every cell, so their intervals come from a seeded percentile bootstrap over images
(``scipy.stats.bootstrap``) that resamples the images once for all cells, keeping the pairing.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

DEFAULT_CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0  # fixed: a rerun gives the same interval, byte for byte


@functools.lru_cache(maxsize=8)
def _normal_quantile(level: float) -> float:
    return float(stats.norm.ppf(level))


def proportion_interval(successes: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    """Wilson's score interval of a proportion ``successes / n`` (as fractions), in closed form:
    scipy's ``binomtest(...).proportion_ci(method="wilson")`` gives the same bounds (to 4 decimals
    of a percent on every n ≤ 400 and samples up to 10,000, tests/test_statistics.py), 100 times
    slower, which a report of thousands of cells notices."""
    if n == 0:
        return (float("nan"), float("nan"))
    z = _normal_quantile(0.5 + confidence / 2)
    share, spread = successes / n, z * z / n
    center = (share + spread / 2) / (1 + spread)
    half = z * math.sqrt(share * (1 - share) / n + spread / (4 * n)) / (1 + spread)
    return (max(0.0, center - half), min(1.0, center + half))


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
    return bootstrap_intervals(outcomes, [statistic], confidence, resamples, seed)[0]


def bootstrap_intervals(
    outcomes: np.ndarray,
    statistics: Sequence[Callable[[np.ndarray], np.ndarray]],
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> list[tuple[float, float]]:
    """``bootstrap_interval`` of several statistics of the same outcomes, over one set of resamples:
    each interval is the one its statistic gets alone (the same seeded draws), while the resampled
    rates, which cost the most, are computed once for all."""
    outcomes = np.asarray(outcomes, dtype=np.float32)
    images = outcomes.shape[1]
    if images < 2:
        return [(float("nan"), float("nan"))] * len(statistics)

    def per_resample(index: np.ndarray, axis: int = -1) -> np.ndarray:
        index = np.atleast_2d(index).astype(np.int64)  # (resamples in this batch, images)
        # how often each image was drawn (one bincount for the batch, each resample offset to its own
        # block), then one matrix product for every cell and resample
        offsets = (index + images * np.arange(len(index))[:, None]).ravel()
        draws = np.bincount(offsets, minlength=images * len(index)).reshape(len(index), images).T.astype(np.float32)
        rates = outcomes @ draws / images  # (cells, batch)
        return np.stack([statistic(rates) for statistic in statistics])

    result = stats.bootstrap(
        (np.arange(images),), per_resample, n_resamples=resamples, vectorized=True, batch=50,
        confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed),
    )
    lows, highs = np.atleast_1d(result.confidence_interval.low), np.atleast_1d(result.confidence_interval.high)
    return [(float(low), float(high)) for low, high in zip(lows, highs)]


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
