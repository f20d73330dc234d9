"""ImageNet ResNet-18/34/50/101 with a GAP head (torchvision) or the original GCP head.

The GCP variant follows ``ResNet_MPNCOV.py``: layer4 keeps stride 1 (14×14 maps at 224 px),
then ``layer_reduce`` (1×1 conv) → ``layer_reduce_bn`` → ``layer_reduce_relu`` → iSQRT-COV →
``fc``. Module names equal the original release, so its checkpoints load with strict=True.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from .gcp import DEFAULT_ITERATIONS, CovarianceSqrt, reduction_layers, representation_dim
from .normalize import Normalize
from .registry import register_model

_DEPTHS: dict[int, tuple[type[nn.Module], list[int]]] = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
}


def remove_stride(layer: nn.Sequential) -> None:
    """Turn the first block of a stage into a stride-1 block (its 3×3 conv and shortcut)."""
    for module in layer[0].modules():
        if isinstance(module, nn.Conv2d) and module.stride != (1, 1):
            module.stride = (1, 1)


class ClassifierResNet(ResNet):
    """torchvision ResNet that takes [0, 1] images and optionally ends in a GCP head."""

    def __init__(
        self,
        depth: int,
        num_classes: int = 1000,
        reduction_dim: int | None = None,
        iterations: int = DEFAULT_ITERATIONS,
    ) -> None:
        block, layers = _DEPTHS[depth]
        super().__init__(block, layers, num_classes=num_classes)
        self.normalize = Normalize()
        self.gcp = reduction_dim is not None
        if self.gcp:
            remove_stride(self.layer4)
            del self.avgpool, self.fc
            in_channels = 512 * block.expansion
            self.layer_reduce, self.layer_reduce_bn, self.layer_reduce_relu = reduction_layers(
                in_channels, reduction_dim, nn.ReLU
            )
            self.representation = CovarianceSqrt(iterations)
            self.fc = nn.Linear(representation_dim(reduction_dim), num_classes)

    def features(self, images: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(self.normalize(images)))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, images: Tensor) -> Tensor:
        x = self.features(images)
        if self.gcp:
            x = self.layer_reduce_relu(self.layer_reduce_bn(self.layer_reduce(x)))
            return self.fc(self.representation(x))
        return self.fc(self.avgpool(x).flatten(1))


def _register(depth: int) -> None:
    common = dict(family="resnet", num_classes=1000, input_size=224, depth=depth)
    register_model(f"resnet{depth}_gap", head="gap", aliases=(f"resnet{depth}",), **common)(
        ClassifierResNet
    )
    for dim, suffix in ((256, ""), (128, "128")):
        register_model(
            f"resnet{depth}_gcp{suffix}",
            head="gcp",
            reduction_dim=dim,
            aliases=(f"resnet{depth}_mpncov" + (f"_{suffix}" if suffix else ""),),
            **common,
        )(ClassifierResNet)


for _depth in _DEPTHS:
    _register(_depth)
