"""Wide Residual Networks WRN-34-10 and WRN-28-10.

Zagoruyko & Komodakis, Wide Residual Networks, BMVC 2016.
Pre-activation basic blocks (He et al., Identity Mappings in Deep Residual
Networks, ECCV 2016); dropout is not used.
"""

import torch
import torch.nn.functional as F
from torch import nn

from . import register
from .layers import Normalize, scale_channels


class PreActBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        # a projection shortcut sees the pre-activated input, as in the WRN reference
        shortcut = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen_factor: int, num_classes: int, in_channels: int, width: float):
        super().__init__()
        n = (depth - 4) // 6  # depth = 6n + 4: three stages of n two-conv blocks, stem, classifier
        self.normalize = Normalize(in_channels)
        in_planes = scale_channels(16, width)
        layers = [nn.Conv2d(in_channels, in_planes, 3, padding=1, bias=False)]
        for i, base in enumerate((16, 32, 64)):
            planes = scale_channels(base * widen_factor, width)
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                layers.append(PreActBlock(in_planes, planes, stride))
                in_planes = planes
        layers += [nn.BatchNorm2d(in_planes), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(self.normalize(x))
        return self.fc(torch.flatten(self.pool(out), 1))


@register("wrn34_10")
def wrn34_10(num_classes: int, in_channels: int, width: float) -> nn.Module:
    return WideResNet(34, 10, num_classes, in_channels, width)


@register("wrn28_10")
def wrn28_10(num_classes: int, in_channels: int, width: float) -> nn.Module:
    return WideResNet(28, 10, num_classes, in_channels, width)
