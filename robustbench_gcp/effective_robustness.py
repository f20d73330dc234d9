"""Effective robustness (Taori et al. 2020, "Measuring Robustness to Natural Distribution Shifts in
Image Classification"): a model's top-1 accuracy under a natural shift minus the accuracy that
comparable models' trend predicts from its clean accuracy, in percentage points.

The trend is a line through logit-scaled accuracies, logit(shifted) = slope · logit(clean) +
intercept, fitted by least squares as Taori et al. fit theirs. It is fitted over the models in the
results store that were evaluated on the same shifted images and the same clean images (the newest
run of each model and checkpoint), once there are at least three of them; or it is given
(``--trend``), e.g. a line a paper published. Accuracies of 0 or 1 are moved half an image
inwards, so that their logit is finite.

The interval is a seeded percentile bootstrap over images: each resample redraws the shifted
images and the clean images (independently: they are different photos) and, for a fitted trend,
refits the line, so it holds the model's own sampling error and the trend's. Runs over the same
images share the draws, so the difference between two models (GCP − GAP) is paired.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import Error, counted
from .results import Cell, ResultStore, Run
from .statistics import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED
from .summaries import CLEAN, unpack_flags

MIN_MODELS = 3
_BATCH = 100  # resamples drawn at once: (batch × images) counts in memory


class TrendError(Error, ValueError):
    """A ``--trend`` that cannot be used, with the fix in the message."""


def _logit(p: np.ndarray, n: np.ndarray | int) -> np.ndarray:
    """logit of accuracies over ``n`` images, 0 and 1 moved half an image inwards."""
    p = np.clip(p, 0.5 / n, 1 - 0.5 / n)
    return np.log(p / (1 - p))


def _expit(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


@dataclass(frozen=True)
class Trend:
    """logit(shifted accuracy) = slope · logit(clean accuracy) + intercept; ``source`` says where
    it comes from, ``fitted_on`` the runs of a fit over the store (empty: given)."""

    slope: float
    intercept: float
    source: str
    fitted_on: tuple[int, ...] = ()

    def describe(self) -> str:
        sign = "−" if self.intercept < 0 else "+"
        return f"logit(shifted) = {self.slope:.3f}·logit(clean) {sign} {abs(self.intercept):.3f}, {self.source}"


def parse_trend(text: str, shifts: Iterable[str]) -> tuple[str, Trend]:
    """``SHIFT=SLOPE,INTERCEPT`` (a ``--trend``) → (shift, Trend)."""
    shifts = list(shifts)
    found = re.fullmatch(r"\s*([\w.-]+)\s*=\s*([^,]+),([^,]+)", text)
    try:
        slope, intercept = (float(found.group(i)) for i in (2, 3)) if found else (math.nan, math.nan)
    except ValueError:
        slope = intercept = math.nan
    if not found or not (math.isfinite(slope) and math.isfinite(intercept)):
        raise TrendError(f"--trend {text!r}: pass SHIFT=SLOPE,INTERCEPT of logit(shifted) = SLOPE·logit(clean) + "
                         "INTERCEPT, e.g. imagenet-r=0.9,-1.6")
    if found.group(1) not in shifts:
        raise TrendError(f"--trend {text!r}: {found.group(1)!r} is not a shift; choose one of {', '.join(shifts)}")
    return found.group(1), Trend(slope, intercept, "given with --trend")


@dataclass(frozen=True)
class Estimate:
    """A run's effective robustness (points) with its interval, the trend it is measured from,
    and, where there is none, why."""

    value: float | None
    interval: tuple[float, float] | None
    trend: Trend | None
    note: str = ""


def images_key(run: Run) -> tuple:
    """What makes two shift runs' accuracies comparable points of one trend: the same shifted
    images and the same clean images."""
    config = run.config
    return (config.get("shift"), config.get("dataset"), config.get("dataset_size"), config.get("limit"),
            config.get("seed") if config.get("limit") else None, repr(config.get("clean")))


@dataclass
class _Set:
    """One image set (shifted or clean) of a group's runs: each run's images read and classified
    correctly, and its per-image hits where stored (not where images were unreadable)."""

    n: np.ndarray  # (runs,)
    correct: np.ndarray  # (runs,)
    hits: list[np.ndarray | None]

    @classmethod
    def of(cls, cells: list[Cell]) -> _Set:
        hits = [unpack_flags(c.mask)[: c.n] if c.mask is not None and not c.skipped else None for c in cells]
        return cls(np.array([c.n for c in cells], dtype=np.float64),
                   np.array([c.n - c.top1_errors for c in cells], dtype=np.float64), hits)

    @property
    def accuracy(self) -> np.ndarray:
        return self.correct / self.n

    def logit(self, accuracy: np.ndarray) -> np.ndarray:
        """logit of accuracies of these runs (runs, or runs × resamples)."""
        return _logit(accuracy, self.n if accuracy.ndim == 1 else self.n[:, None])

    def resampled(self, rng: np.random.Generator, resamples: int) -> np.ndarray:
        """Accuracies (runs × resamples) over images drawn with replacement, the same draws for
        every run with per-image hits; runs without them redraw their count binomially."""
        with_hits = [i for i, h in enumerate(self.hits) if h is not None]
        out = np.empty((len(self.hits), resamples))
        if with_hits:
            matrix = np.stack([self.hits[i] for i in with_hits]).astype(np.float32)
            images = matrix.shape[1]
            for start in range(0, resamples, _BATCH):
                draws = np.stack([np.bincount(rng.integers(0, images, images), minlength=images)
                                  for _ in range(min(_BATCH, resamples - start))]).astype(np.float32)
                out[with_hits, start : start + len(draws)] = matrix @ draws.T / images
        for i in (i for i, h in enumerate(self.hits) if h is None):
            out[i] = rng.binomial(int(self.n[i]), self.accuracy[i], size=resamples) / self.n[i]
        return out


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slope and intercept of y on x along the first axis (one line per column)."""
    dx = x - x.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (dx * (y - y.mean(axis=0))).sum(axis=0) / (dx**2).sum(axis=0)
    return slope, y.mean(axis=0) - slope * x.mean(axis=0)


@dataclass
class _Group:
    """The runs over one pair of image sets: their accuracies, the trend, and bootstrap resamples."""

    runs: list[Run]
    clean: _Set
    shifted: _Set
    trend: Trend | None
    fit: list[int]  # positions of the runs the trend is fitted on (empty: given)
    note: str
    _resampled: np.ndarray | None = field(default=None, repr=False)

    def values(self) -> np.ndarray:
        """Effective robustness of every run (points), from the trend."""
        assert self.trend is not None
        predicted = _expit(self.trend.slope * self.clean.logit(self.clean.accuracy) + self.trend.intercept)
        return 100 * (self.shifted.accuracy - predicted)

    def resampled(self) -> np.ndarray:
        """Effective robustness (runs × resamples), the trend refitted on each resample."""
        if self._resampled is None:
            rng = np.random.default_rng(BOOTSTRAP_SEED)
            clean = self.clean.resampled(rng, BOOTSTRAP_RESAMPLES)
            shifted = self.shifted.resampled(rng, BOOTSTRAP_RESAMPLES)
            x, y = self.clean.logit(clean), self.shifted.logit(shifted)
            if self.fit:
                slope, intercept = _fit(x[self.fit], y[self.fit])
            else:
                slope, intercept = self.trend.slope, self.trend.intercept
            self._resampled = 100 * (shifted - _expit(slope * x + intercept))
        return self._resampled


def _interval(samples: np.ndarray, confidence: float) -> tuple[float, float] | None:
    samples = samples[np.isfinite(samples)]
    if len(samples) < 2:
        return None
    tail = 50 * (1 - confidence)
    low, high = np.percentile(samples, [tail, 100 - tail])
    return (round(float(low), 4), round(float(high), 4))


class EffectiveRobustness:
    """Effective robustness of the shift runs of a store, worked out once per group of runs over
    the same images. ``trends``: given trends by shift (``imagenet-r``), used instead of a fit."""

    def __init__(self, store: ResultStore, trends: Mapping[str, Trend] | None = None) -> None:
        self.store, self.trends = store, dict(trends or {})
        self._groups: dict[tuple, _Group | None] = {}
        self._cells: dict[int, dict] = {}

    def _cells_of(self, run: Run) -> dict:
        if run.id not in self._cells:
            self._cells[run.id] = self.store.cells(run)
        return self._cells[run.id]

    def _complete(self, run: Run) -> bool:
        cells = self._cells_of(run)
        shifted, clean = cells.get((run.config.get("shift"), "0")), cells.get(CLEAN)
        return bool(shifted and clean and shifted.n and clean.n)

    def _group(self, run: Run) -> _Group | None:
        key = images_key(run)
        if key not in self._groups:
            runs = [r for r in self.store.runs("shift") if images_key(r) == key and self._complete(r)]
            self._groups[key] = self._build(run.config.get("shift"), runs) if runs else None
        return self._groups[key]

    def _build(self, shift: str, runs: list[Run]) -> _Group:
        newest = {(r.model, r.config.get("checkpoint_sha256")): i for i, r in enumerate(runs)}  # runs: oldest first
        fit = sorted(newest.values())
        clean = _Set.of([self._cells_of(r)[CLEAN] for r in runs])
        shifted = _Set.of([self._cells_of(r)[shift, "0"] for r in runs])
        if shift in self.trends:
            return _Group(runs, clean, shifted, self.trends[shift], [], "")
        x, y = clean.logit(clean.accuracy)[fit], shifted.logit(shifted.accuracy)[fit]
        if len(fit) < MIN_MODELS or np.ptp(x) == 0:
            why = (f"only {counted(len(fit), 'model')} in the store {'has' if len(fit) == 1 else 'have'} a clean and "
                   f"a shifted accuracy on these images, the fit needs {MIN_MODELS}") if len(fit) < MIN_MODELS else \
                f"the {len(fit)} models in the store have the same clean accuracy on these images"
            note = (f"no trend: {why}; evaluate more models with the same --data, --clean-data and --limit, or pass "
                    f"--trend {shift}=SLOPE,INTERCEPT")
            return _Group(runs, clean, shifted, None, fit, note)
        slope, intercept = _fit(x[:, None], y[:, None])
        ids = ", ".join(str(runs[i].id) for i in fit)
        trend = Trend(float(slope[0]), float(intercept[0]), f"fitted over {len(fit)} models in the store (runs {ids})",
                      tuple(runs[i].id for i in fit))
        return _Group(runs, clean, shifted, trend, fit, "")

    def estimate(self, run: Run, confidence: float | None = None) -> Estimate:
        """The effective robustness of a stored shift run, with its interval at ``confidence`` (None: none)."""
        if run.kind != "shift" or not self._complete(run):
            return Estimate(None, None, None, "no clean accuracy: evaluate with --clean-data (the ImageNet "
                            "validation set) for effective robustness")
        group = self._group(run)
        if group is None or group.trend is None:
            return Estimate(None, None, None, group.note if group else "")
        index = next(i for i, r in enumerate(group.runs) if r.id == run.id)
        value = round(float(group.values()[index]), 4)
        interval = _interval(group.resampled()[index], confidence) if confidence else None
        return Estimate(value, interval, group.trend, group.trend.describe())

    def difference(self, gap: Run, gcp: Run, confidence: float) -> tuple[float, tuple[float, float] | None] | None:
        """Effective robustness of ``gcp`` minus that of ``gap`` over the same images, with its
        paired interval at ``confidence``; None where either has none or the images differ."""
        if images_key(gap) != images_key(gcp) or not (self._complete(gap) and self._complete(gcp)):
            return None
        group = self._group(gap)
        if group is None or group.trend is None:
            return None
        at = {r.id: i for i, r in enumerate(group.runs)}
        values, samples = group.values(), group.resampled()
        delta = round(float(values[at[gcp.id]] - values[at[gap.id]]), 4)
        return delta, _interval(samples[at[gcp.id]] - samples[at[gap.id]], confidence)

    def newest_by_model(self, runs: Sequence[Run]) -> tuple[list[str], dict[str, dict[str, float | None]]]:
        """The shifts of ``runs`` and, per model, the effective robustness of its newest run on
        each (points): the columns of the paper's layout."""
        newest = {(r.model, r.config.get("shift")): r for r in sorted(runs, key=lambda r: r.id)}
        values: dict[str, dict[str, float | None]] = {}
        for (model, shift), run in newest.items():
            values.setdefault(model, {})[shift] = self.estimate(run).value
        return list(dict.fromkeys(shift for _, shift in newest)), values
