"""CIFAR-scale ResNet-20/32/44/56 (3 stages of 16/32/64 channels, option-A shortcuts).

The GAP variant has the layout of the widely used pretrained CIFAR-10 ResNets (``conv1``,
``bn1``, ``layer1..3``, ``linear``), so those files load with strict=True. The GCP variant keeps
the body but, like the ImageNet GCP ResNets, drops the last downsampling (16×16 maps at 32 px)
and ends in ``layer_reduce`` → ``layer_reduce_bn`` → ``layer_reduce_relu`` → iSQRT-COV →
``linear``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .gcp import DEFAULT_ITERATIONS, CovarianceSqrt, reduction_layers, representation_dim
from .normalize import Normalize
from .registry import register_model

_WIDTHS = (16, 32, 64)


class PadShortcut(nn.Module):
    """Option-A shortcut: subsample by the stride and zero-pad the new channels; no parameters."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad = (planes - in_planes) // 2

    def forward(self, x: Tensor) -> Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    """3×3 conv → BN → ReLU → 3×3 conv → BN, plus the shortcut, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        changes_shape = stride != 1 or in_planes != planes
        self.shortcut = PadShortcut(in_planes, planes, stride) if changes_shape else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32-px images in [0, 1], with a GAP or a GCP head."""

    def __init__(
        self,
        depth: int,
        num_classes: int = 10,
        reduction_dim: int | None = None,
        iterations: int = DEFAULT_ITERATIONS,
    ) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        blocks = (depth - 2) // 6
        self.gcp = reduction_dim is not None
        self.normalize = Normalize()
        self.conv1 = nn.Conv2d(3, _WIDTHS[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(_WIDTHS[0])
        last_stride = 1 if self.gcp else 2
        self.layer1 = self._make_layer(_WIDTHS[0], _WIDTHS[0], blocks, 1)
        self.layer2 = self._make_layer(_WIDTHS[0], _WIDTHS[1], blocks, 2)
        self.layer3 = self._make_layer(_WIDTHS[1], _WIDTHS[2], blocks, last_stride)
        features = _WIDTHS[2]
        if self.gcp:
            self.layer_reduce, self.layer_reduce_bn, self.layer_reduce_relu = reduction_layers(
                _WIDTHS[2], reduction_dim, nn.ReLU
            )
            self.representation = CovarianceSqrt(iterations)
            features = representation_dim(reduction_dim)
        self.linear = nn.Linear(features, num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)

    @staticmethod
    def _make_layer(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_planes, planes, stride)]
        layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, images: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(self.normalize(images))))
        x = self.layer3(self.layer2(self.layer1(x)))
        if self.gcp:
            x = self.layer_reduce_relu(self.layer_reduce_bn(self.layer_reduce(x)))
            return self.linear(self.representation(x))
        return self.linear(x.mean(dim=(2, 3)))


for _depth in (20, 32, 44, 56):
    _common = dict(family="cifar_resnet", num_classes=10, input_size=32, depth=_depth)
    register_model(f"cifar_resnet{_depth}_gap", head="gap", **_common)(CifarResNet)
    register_model(f"cifar_resnet{_depth}_gcp", head="gcp", reduction_dim=64, **_common)(CifarResNet)
