"""MobileNetV2, CIFAR variant.

Sandler et al., MobileNetV2: Inverted Residuals and Linear Bottlenecks,
CVPR 2018. For 32x32 inputs the stem and the first stride-2 stage (24
channels) use stride 1, leaving three downsamplings (32 -> 4).
"""

import torch
import torch.nn.functional as F
from torch import nn

from . import register
from .layers import Normalize, scale_channels

# (expansion t, output channels c, repeats n, first stride s), CIFAR strides.
_CONFIG = [
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class InvertedResidual(nn.Module):
    """Expand (1x1) - depthwise (3x3) - linear project (1x1), residual when shapes match."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        self.expand = _conv_bn(in_channels, hidden, 1) if expansion != 1 else None
        self.depthwise = _conv_bn(hidden, hidden, 3, stride, groups=hidden)
        self.project = _conv_bn(hidden, out_channels, 1)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.expand is None else F.relu6(self.expand(x))
        out = self.project(F.relu6(self.depthwise(out)))
        return out + x if self.residual else out


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, width: float):
        super().__init__()
        self.normalize = Normalize(in_channels)
        channels = scale_channels(32, width)
        layers = [_conv_bn(in_channels, channels, 3), nn.ReLU6()]
        for t, c, n, s in _CONFIG:
            out = scale_channels(c, width)
            for i in range(n):
                layers.append(InvertedResidual(channels, out, s if i == 0 else 1, t))
                channels = out
        last = scale_channels(1280, width)
        layers += [_conv_bn(channels, last, 1), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(self.normalize(x))
        return self.fc(torch.flatten(self.pool(out), 1))


@register("mobilenetv2")
def mobilenetv2(num_classes: int, in_channels: int, width: float) -> nn.Module:
    return MobileNetV2(num_classes, in_channels, width)
