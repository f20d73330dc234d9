"""ShuffleNetV2 x1.0 with a GAP head (torchvision) or the original GCP head.

The GCP variant follows ``ShuffleNetV2_MPNCOV.py``: every stride kept (7×7 maps),
``dimension_reduction`` (1×1 conv 1024→256 → BN → ReLU6) → iSQRT-COV → ``fc`` (no dropout).
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models.shufflenetv2 import ShuffleNetV2

from .gcp import DEFAULT_ITERATIONS, GCPHead
from .normalize import Normalize
from .registry import register_model

_X1_0 = dict(stages_repeats=[4, 8, 4], stages_out_channels=[24, 116, 232, 464, 1024])


class ClassifierShuffleNetV2(ShuffleNetV2):
    """torchvision ShuffleNetV2 that takes [0, 1] images and optionally ends in a GCP head."""

    def __init__(
        self, num_classes: int = 1000, reduction_dim: int | None = None, iterations: int = DEFAULT_ITERATIONS
    ) -> None:
        super().__init__(num_classes=num_classes, **_X1_0)
        self.normalize = Normalize()
        self.dimension_reduction = None
        if reduction_dim is not None:
            self.dimension_reduction = GCPHead(
                self._stage_out_channels[-1], reduction_dim, nn.ReLU6, iterations, kaiming_init=False
            )
            self.fc = nn.Linear(self.dimension_reduction.out_features, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        x = self.maxpool(self.conv1(self.normalize(images)))
        x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
        if self.dimension_reduction is not None:
            return self.fc(self.dimension_reduction(x))
        return self.fc(x.mean(dim=(2, 3)))


_COMMON = dict(family="shufflenet_v2", num_classes=1000, input_size=224)
register_model(
    "shufflenet_v2_x1_0_gap", head="gap", aliases=("shufflenet_v2_x1_0",), **_COMMON
)(ClassifierShuffleNetV2)
register_model(
    "shufflenet_v2_x1_0_gcp", head="gcp", reduction_dim=256, aliases=("shufflenet_v2_mpncov_x1_0",), **_COMMON
)(ClassifierShuffleNetV2)
