"""Cost of the uncertainty: per-image outcome masks of a full ImageNet-C run (50,000 images ×
76 cells) and the paired bootstrap of its aggregates (mean error, mCE, relative mCE; 1,000
resamples), on the CPU."""

from __future__ import annotations

import time

import numpy as np

from robustbench_gcp.corruptions import names
from robustbench_gcp.metrics import mce, mean_error, relative_mce
from robustbench_gcp.statistics import bootstrap_interval
from robustbench_gcp.summaries import pack_flags


def main() -> None:
    images, rng = 50_000, np.random.default_rng(0)
    keys = [(n, s) for n in names("common") for s in range(1, 6)]
    errors = rng.random((len(keys) + 1, images)) < 0.45  # 75 corruption cells + clean
    masks = sum(len(pack_flags(~row)) for row in errors)
    print(f"per-image outcome masks: {masks / 1e6:.2f} MB for {images} images × {len(errors)} cells")

    def table(rates: np.ndarray) -> dict:
        return {n: [rates[i * 5 + s] for s in range(5)] for i, n in enumerate(names("common"))}

    statistics = {
        "mean error": lambda rates: mean_error(table(rates)),
        "mCE": lambda rates: mce(table(rates)),
        "relative mCE": lambda rates: relative_mce(table(rates), rates[-1]),
    }
    total = 0.0
    for label, statistic in statistics.items():
        start = time.perf_counter()
        low, high = bootstrap_interval(errors, statistic)
        seconds = time.perf_counter() - start
        total += seconds
        print(f"bootstrap of {label:12s}: [{low:.3f}, {high:.3f}] in {seconds:.2f} s (1,000 resamples)")
    print(f"all three aggregates: {total:.2f} s (target: under 10 s on 2 cores)")


if __name__ == "__main__":
    main()
