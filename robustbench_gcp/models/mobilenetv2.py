"""MobileNetV2 1.0 with a GAP head (torchvision) or the original GCP head.

The GCP variant follows ``MobileNetV2_MPNCOV.py``: every stride kept (7×7 maps at 224 px),
``dimension_reduction`` (1×1 conv → BN → ReLU6) → iSQRT-COV → ``classifier`` (Dropout 0.2,
Linear). Module names equal the original release.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models.mobilenetv2 import MobileNetV2

from .gcp import DEFAULT_ITERATIONS, GCPHead
from .normalize import Normalize
from .registry import register_model


class ClassifierMobileNetV2(MobileNetV2):
    """torchvision MobileNetV2 that takes [0, 1] images and optionally ends in a GCP head."""

    def __init__(
        self, num_classes: int = 1000, reduction_dim: int | None = None, iterations: int = DEFAULT_ITERATIONS
    ) -> None:
        super().__init__(num_classes=num_classes, dropout=0.2)
        self.normalize = Normalize()
        self.dimension_reduction = None
        if reduction_dim is not None:
            self.dimension_reduction = GCPHead(self.last_channel, reduction_dim, nn.ReLU6, iterations)
            fc = nn.Linear(self.dimension_reduction.out_features, num_classes)
            nn.init.normal_(fc.weight, 0, 0.01)
            nn.init.zeros_(fc.bias)
            self.classifier = nn.Sequential(nn.Dropout(p=0.2), fc)

    def forward(self, images: Tensor) -> Tensor:
        x = self.features(self.normalize(images))
        if self.dimension_reduction is not None:
            return self.classifier(self.dimension_reduction(x))
        return self.classifier(x.mean(dim=(2, 3)))


_COMMON = dict(family="mobilenet_v2", num_classes=1000, input_size=224)
register_model("mobilenet_v2_gap", head="gap", aliases=("mobilenet_v2",), **_COMMON)(ClassifierMobileNetV2)
register_model(
    "mobilenet_v2_gcp", head="gcp", reduction_dim=256, aliases=("mobilenet_v2_mpncov",), **_COMMON
)(ClassifierMobileNetV2)
register_model(
    "mobilenet_v2_gcp128", head="gcp", reduction_dim=128, aliases=("mobilenet_v2_mpncov_128",), **_COMMON
)(ClassifierMobileNetV2)
