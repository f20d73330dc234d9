"""Corruption metrics: error, CE, mCE and relative mCE against the AlexNet baseline.

``errors`` maps a corruption name to its five top-1 error rates (fractions in [0, 1], severity 1
first); every function returns percent. mCE and relative mCE use the 15 benchmark corruptions
and AlexNet's published errors, or any corruptions and a baseline table (a stored run's errors:
the C-bar protocols are normalised that way). A rate may also be a numpy array (one value per
bootstrap resample): the formulas are elementwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from torch import Tensor

from .attacks.rows import top_hits
from .corruptions import names

# torchvision AlexNet on the full ImageNet-C (50,000 images per cell), severities 1–5.
ALEXNET_ERRORS: dict[str, tuple[float, float, float, float, float]] = {
    "gaussian_noise": (0.69528, 0.82542, 0.93554, 0.98138, 0.99452),
    "shot_noise": (0.71224, 0.85108, 0.93574, 0.98182, 0.99146),
    "impulse_noise": (0.78374, 0.89808, 0.94870, 0.98720, 0.99548),
    "defocus_blur": (0.65624, 0.73202, 0.85036, 0.91364, 0.94714),
    "glass_blur": (0.64308, 0.75054, 0.88806, 0.91622, 0.93344),
    "motion_blur": (0.58430, 0.70048, 0.82108, 0.89750, 0.92638),
    "zoom_blur": (0.70008, 0.76992, 0.80784, 0.84198, 0.87198),
    "snow": (0.71726, 0.88392, 0.86468, 0.91870, 0.94952),
    "frost": (0.61390, 0.79734, 0.88790, 0.89942, 0.93430),
    "fog": (0.67474, 0.76050, 0.84378, 0.87260, 0.94500),
    "brightness": (0.45140, 0.48502, 0.54048, 0.62166, 0.72440),
    "contrast": (0.64548, 0.76150, 0.88874, 0.97760, 0.99270),
    "elastic_transform": (0.52596, 0.70116, 0.55686, 0.64076, 0.80554),
    "pixelate": (0.52218, 0.54620, 0.73728, 0.87092, 0.91262),
    "jpeg_compression": (0.51002, 0.54718, 0.57294, 0.65458, 0.74778),
    "speckle_noise": (0.66192, 0.74440, 0.90246, 0.94548, 0.97268),
    "gaussian_blur": (0.54732, 0.70444, 0.82574, 0.89864, 0.95940),
    "spatter": (0.47196, 0.62194, 0.75052, 0.84132, 0.90182),
    "saturate": (0.59342, 0.65514, 0.51174, 0.70834, 0.82260),
}
# torchvision AlexNet clean top-1 error (56.52 % top-1 accuracy).
ALEXNET_CLEAN_ERROR = 1 - 0.5652

ErrorTable = Mapping[str, Sequence[float]]


def _complete(errors: ErrorTable, corruptions: Sequence[str], what: str = "") -> None:
    missing = [n for n in corruptions
               if n not in errors or len(errors[n]) != 5 or any(r is None for r in errors[n])]
    if missing:
        raise ValueError(f"mCE needs all {len(corruptions)} corruptions at severities 1-5{what}; missing: "
                         f"{', '.join(missing)}")


def corruption_error(name: str, rates: Sequence[float], baseline: ErrorTable | None = None) -> float:
    """CE of one corruption: Σ_s E(f, c, s) / Σ_s E(baseline, c, s), in percent (AlexNet's by default)."""
    return 100 * sum(rates) / sum((ALEXNET_ERRORS if baseline is None else baseline)[name])


def relative_corruption_error(name: str, rates: Sequence[float], clean_error: float, baseline: ErrorTable | None = None,
                              baseline_clean: float | None = None) -> float:
    """Relative CE, clean error subtracted per severity: Σ_s (E − E_clean) / Σ_s (E_base − E_base,clean)
    (AlexNet by default)."""
    if baseline is None:
        baseline, baseline_clean = ALEXNET_ERRORS, ALEXNET_CLEAN_ERROR
    ours = sum(rate - clean_error for rate in rates)
    theirs = sum(rate - baseline_clean for rate in baseline[name])
    return 100 * ours / theirs


def _normalised_by(corruptions: Sequence[str] | None, baseline: ErrorTable | None) -> Sequence[str]:
    """The corruptions an mCE averages over: the 15 benchmark ones against AlexNet, or those named
    (which the baseline must hold at every severity)."""
    if baseline is None:
        return names("common") if corruptions is None else corruptions
    if corruptions is None:
        raise ValueError("an mCE against a baseline run needs the corruptions it averages over")
    _complete(baseline, corruptions, " in the baseline run")
    return corruptions


def mce(errors: ErrorTable, baseline: ErrorTable | None = None, corruptions: Sequence[str] | None = None) -> float:
    """Mean CE over the 15 benchmark corruptions (AlexNet = 100), or over ``corruptions`` against
    a ``baseline`` table (baseline = 100)."""
    chosen = _normalised_by(corruptions, baseline)
    _complete(errors, chosen)
    return sum(corruption_error(n, errors[n], baseline) for n in chosen) / len(chosen)


def relative_mce(errors: ErrorTable, clean_error: float, baseline: ErrorTable | None = None,
                 baseline_clean: float | None = None, corruptions: Sequence[str] | None = None) -> float:
    """Mean relative CE over the 15 benchmark corruptions, or over ``corruptions`` against a
    ``baseline`` table and its clean error."""
    chosen = _normalised_by(corruptions, baseline)
    _complete(errors, chosen)
    return sum(relative_corruption_error(n, errors[n], clean_error, baseline, baseline_clean)
               for n in chosen) / len(chosen)


def mean_error(errors: ErrorTable, corruptions: Sequence[str] | None = None) -> float:
    """Unnormalised mean top-1 error over every given (benchmark corruption, severity), percent:
    the 15 of ImageNet-C where any of them is given, else those of C-bar (a run holds one set).

    The CIFAR-10-C convention (and RobustBench's corruption accuracy = 100 − this); the C-bar
    papers' average error.
    """
    if corruptions is None:
        corruptions = names("common") if any(n in errors for n in names("common")) else names("c-bar")
    rates = [r for n in corruptions if n in errors for r in errors[n] if r is not None]
    if not rates:
        raise ValueError("mean_error needs at least one benchmark corruption")
    return 100 * sum(rates) / len(rates)


@dataclass
class Counts:
    """Top-1/top-5 error counts, not percentages, so shards and resumed runs add up exactly."""

    n: int = 0
    top1_errors: int = 0
    top5_errors: int = 0

    def add(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Count a batch; returns its per-sample top-1 hits (the same ones the counts use)."""
        top1, top5 = top_hits(logits, labels)
        self.n += labels.numel()
        self.top1_errors += int((~top1).sum())
        self.top5_errors += int((~top5).sum())
        return top1

    @property
    def top1_accuracy(self) -> float:
        return 100.0 * (1 - self.top1_errors / self.n) if self.n else float("nan")
