"""DenseNet-121 (DenseNet-BC), CIFAR variant.

Huang et al., Densely Connected Convolutional Networks, CVPR 2017.
Growth rate 32 (scaled by ``width``), dense blocks of 6-12-24-16 bottleneck
layers, compression 0.5, and a 3x3 stride-1 stem without pooling for 32x32
inputs.
"""

from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from . import register
from .layers import Normalize, scale_channels


class DenseLayer(nn.Module):
    """BN-ReLU-Conv1x1(4k)-BN-ReLU-Conv3x3(k); output concatenated to the input."""

    def __init__(self, in_channels: int, growth: int):
        super().__init__()
        inner = 4 * growth
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, inner, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([x, out], dim=1)


class Transition(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNet(nn.Module):
    def __init__(self, block_sizes: List[int], num_classes: int, in_channels: int, width: float):
        super().__init__()
        self.normalize = Normalize(in_channels)
        growth = scale_channels(32, width)
        channels = 2 * growth
        layers = [nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)]
        for i, n in enumerate(block_sizes):
            for _ in range(n):
                layers.append(DenseLayer(channels, growth))
                channels += growth
            if i < len(block_sizes) - 1:
                layers.append(Transition(channels, channels // 2))
                channels //= 2
        layers += [nn.BatchNorm2d(channels), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(self.normalize(x))
        return self.fc(torch.flatten(self.pool(out), 1))


@register("densenet121")
def densenet121(num_classes: int, in_channels: int, width: float) -> nn.Module:
    return DenseNet([6, 12, 24, 16], num_classes, in_channels, width)
