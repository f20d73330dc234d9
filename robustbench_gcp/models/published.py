"""The numbers the seed release published for its checkpoints, to set beside a rerun's.

Clean top-1/top-5 come from the checkpoint records (``zoo.py``). The ImageNet-C mCE and relative
mCE and ImageNet-P mFR and mT5D come from the release's README table (12 models): its GAP rows of
MobileNetV2 and ShuffleNetV2 are the release's own LRnorm checkpoints, its GAP ResNet rows are
torchvision's original (V1) weights, which are recognised by the SHA-256 prefix in their file
names. All values are in percent, as the tables print them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .zoo import checkpoint_record

ROBUSTNESS_METRICS = ("mCE", "relative_mCE", "mFR", "mT5D")
RELEASE_README = "the GCP_Optimization release's README (ImageNet-C/-P table)"
TORCHVISION_DOCS = "torchvision's model documentation (IMAGENET1K_V1 weights)"

# record name -> (mCE, relative mCE, mFR, mT5D), from the release's README
_RELEASED: dict[str, tuple[float, float, float, float]] = {
    "MobileNetV2_GAP_LRnorm": (86.4, 113.6, 79.1, 96.0),
    "MobileNetV2_GCP_LRnorm": (81.7, 110.6, 64.3, 87.6),
    "ShuffleNetV2_GAP_LRnorm": (92.7, 126.7, 94.7, 108.2),
    "ShuffleNetV2_GCP_LRnorm": (85.2, 112.6, 75.2, 95.5),
    "ResNet18_GCP_LRnorm": (76.3, 101.3, 53.2, 77.1),
    "ResNet34_GCP_LRnorm": (72.4, 96.9, 47.7, 72.4),
    "ResNet50_GCP_LRnorm": (70.7, 97.9, 47.5, 74.6),
    "ResNet101_GCP_LRnorm": (65.5, 89.1, 42.1, 68.3),
}
# torchvision V1 ResNets: SHA-256 prefix of the weights file -> (top-1, top-5, mCE, rel. mCE, mFR, mT5D)
_TORCHVISION: dict[str, tuple[str, tuple[float, ...]]] = {
    "f37072fd": ("resnet18", (69.758, 89.078, 84.7, 103.9, 72.8, 87.0)),
    "b627a593": ("resnet34", (73.314, 91.420, 77.9, 98.7, 61.7, 79.5)),
    "0676ba61": ("resnet50", (76.130, 92.862, 76.7, 105.0, 58.0, 78.3)),
    "63fe2227": ("resnet101", (77.374, 93.546, 70.3, 93.7, 52.6, 73.9)),
}


@dataclass(frozen=True)
class Published:
    """What was published for one checkpoint: each metric in percent (None where not published)."""

    checkpoint: str
    source: str
    top1: float
    top5: float | None = None
    mCE: float | None = None
    relative_mCE: float | None = None
    mFR: float | None = None
    mT5D: float | None = None

    def values(self) -> dict[str, float]:
        """The published metrics by the names summaries use (clean error, not top-1)."""
        found = {"clean_error": round(100 - self.top1, 4), "clean_accuracy": self.top1,
                 "top5_error": None if self.top5 is None else round(100 - self.top5, 4),
                 **{metric: getattr(self, metric) for metric in ROBUSTNESS_METRICS}}
        return {metric: value for metric, value in found.items() if value is not None}


def published_for(model: str, checkpoint_sha256: str | None) -> Published | None:
    """The published numbers of a run's checkpoint, or None when it is no seed checkpoint: a
    record's own weights (named by the record; CIFAR files also by their hash), or torchvision's
    V1 ResNet weights. A run without a checkpoint (random weights) has none."""
    if not checkpoint_sha256:
        return None
    torchvision = _TORCHVISION.get(checkpoint_sha256[:8])
    if torchvision:
        name, (top1, top5, *robustness) = torchvision
        return Published(f"torchvision {name} (V1)", f"{TORCHVISION_DOCS}; {RELEASE_README}", top1, top5,
                         *robustness)
    record = checkpoint_record(model)
    if record is None:
        return None
    if record.dataset == "cifar10":
        if not checkpoint_sha256.startswith(record.filename.rsplit("-", 1)[-1].split(".")[0]):
            return None  # the record's name with other weights
        return Published(record.name, "the record's reported test accuracy", record.top1)
    robustness = _RELEASED.get(record.name, (None,) * len(ROBUSTNESS_METRICS))
    return Published(record.name, RELEASE_README, record.top1, record.top5, *robustness)
