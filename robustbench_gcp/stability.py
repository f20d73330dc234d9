"""ImageNet-P stability metrics: flip probability (FP) and top-5 distance (T5D) of prediction
sequences, and their baseline-normalised rates FR/T5D and means mFR/mT5D.

The definitions are those of the ImageNet-P evaluator. Within a video, frame pairs are compared
``d`` frames apart (``d`` is the difficulty: pairs (t, t + d) for every t), except for the noise
sequences, whose frames are independent draws: each frame is compared with the first one. FP is
the share of compared pairs whose top-1 class differs; T5D is the mean over pairs of the top-5
rank distance. Both are averaged per video first, then over videos. Counts are kept per video
as integers (flips, summed distances, pairs) so shards and resumed runs add up exactly.

FP and T5D are reported per difficulty: FP is a probability at each one. The reference
evaluators run one difficulty, 1 by default (ImageNet-P's ``test.py --difficulty``, CIFAR-10-P's
``cifar-p-eval.py``), and the published mFR / mT5D are difficulty-1 numbers, so that is the default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

# The test perturbations that enter mFR/mT5D, in the evaluators' order, and the validation ones:
# ImageNet-P's evaluator tests snow and keeps spatter for validation, CIFAR-10-P's the other way round.
TEST_PERTURBATIONS = {
    "imagenet-p": ("gaussian_noise", "shot_noise", "motion_blur", "zoom_blur", "snow", "brightness", "translate",
                   "rotate", "tilt", "scale"),
    "cifar10-p": ("gaussian_noise", "shot_noise", "motion_blur", "zoom_blur", "spatter", "brightness", "translate",
                  "rotate", "tilt", "scale"),
}
VALIDATION_PERTURBATIONS = {"imagenet-p": ("speckle_noise", "gaussian_blur", "spatter", "shear"),
                            "cifar10-p": ("speckle_noise", "gaussian_blur", "snow", "shear")}
ORDER = TEST_PERTURBATIONS["imagenet-p"] + VALIDATION_PERTURBATIONS["imagenet-p"]  # how reports list them
NOISE_PERTURBATIONS = ("gaussian_noise", "shot_noise", "speckle_noise")
DIFFICULTIES = (1, 2, 3)
DEFAULT_DIFFICULTIES = (1,)  # the reference evaluators' difficulty, that of the published mFR / mT5D


def ranked_classes(logits: Tensor, k: int = 5) -> Tensor:
    """The ``k`` best classes per row, best first; equal scores keep the lower class first, as
    the evaluator's ordinal ranking does (so the top-1 is ``argmax``)."""
    return torch.sort(logits.float(), dim=-1, descending=True, stable=True).indices[..., :k]


def frame_pairs(frames: int, difficulty: int, noise: bool) -> tuple[np.ndarray, np.ndarray]:
    """(first, second) frame indices of the compared pairs of a video of ``frames`` frames.

    Noise sequences compare every later frame with frame 0 whatever the difficulty: their
    difficulty is in the noise strength of the sequence (the ``_2``/``_3`` sequences)."""
    if noise:
        later = np.arange(1, frames)
        return np.zeros_like(later), later
    first = np.arange(0, max(frames - difficulty, 0))
    return first, first + difficulty


def top5_rank_distance(first: Tensor, second: Tensor) -> Tensor:
    """The evaluator's top-5 distance between two rankings, per row.

    ``first``/``second`` are (..., 5) class lists, best first. With σ(j) the rank (0-based) in
    the second ranking of the first ranking's j-th class, capped at 5 ("not in the top 5"),
    the distance is Σ_{j<5} |j − σ(j)|: 0 for identical top-5 lists, 15 for disjoint ones.
    """
    k = first.shape[-1]
    same = first[..., :, None] == second[..., None, :]  # (..., j, position in second)
    positions = torch.arange(k, device=first.device)
    sigma = torch.where(same.any(-1), (same * positions).sum(-1), torch.full_like(positions, k))
    return (positions - sigma).abs().sum(-1)


def video_counts(top5: Tensor, difficulty: int, noise: bool) -> Tensor:
    """Per-video (flips, summed top-5 distance, pairs) of class lists ``top5`` (V, T, 5), as
    int64 (V, 3): the integer counts FP and T5D are averaged from."""
    videos, frames = top5.shape[:2]
    first, second = (torch.from_numpy(i).to(top5.device) for i in frame_pairs(frames, difficulty, noise))
    a, b = top5[:, first], top5[:, second]
    flips = (a[..., 0] != b[..., 0]).sum(1)
    distance = top5_rank_distance(a, b).sum(1)
    pairs = torch.full_like(flips, len(first))
    return torch.stack([flips, distance, pairs], dim=1).long()


def flip_probability(counts: np.ndarray) -> float:
    """FP from per-video counts (V, 3): the mean over videos of each video's flip share."""
    counts = np.asarray(counts, dtype=np.float64)
    return float(np.mean(counts[:, 0] / counts[:, 2]))


def top5_distance(counts: np.ndarray) -> float:
    """T5D from per-video counts (V, 3): the mean over videos of each video's mean distance."""
    counts = np.asarray(counts, dtype=np.float64)
    return float(np.mean(counts[:, 1] / counts[:, 2]))


def normalized_rates(values: Mapping[str, float], baseline: Mapping[str, float]) -> dict[str, float]:
    """FR (or normalised T5D) per perturbation in percent: 100 · value / baseline value."""
    return {name: 100 * value / baseline[name] for name, value in values.items()
            if name in baseline and baseline[name] > 0}


def mean_rate(rates: Mapping[str, float], perturbations: Sequence[str]) -> float | None:
    """mFR/mT5D: the mean over a protocol's 10 test perturbations; None unless all of them are there."""
    if any(name not in rates for name in perturbations):
        return None
    return sum(rates[name] for name in perturbations) / len(perturbations)


def counts_to_bytes(counts: np.ndarray) -> bytes:
    """Per-video counts (V, 3) as stored in a cell: little-endian int32."""
    return np.ascontiguousarray(counts, dtype="<i4").tobytes()


def counts_from_bytes(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<i4").reshape(-1, 3).astype(np.int64)
