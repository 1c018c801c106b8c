"""CIFAR-style ResNet-18 and ResNet-50.

He et al., Deep Residual Learning for Image Recognition, CVPR 2016.
The stem is a single 3x3 stride-1 convolution without max-pooling, as is
usual for 32x32 inputs.
"""

from typing import List, Type, Union

import torch
import torch.nn.functional as F
from torch import nn

from . import register
from .layers import Normalize, scale_channels


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_planes),
    )


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = _shortcut(in_planes, out_planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(
        self,
        block: Type[Union[BasicBlock, Bottleneck]],
        num_blocks: List[int],
        num_classes: int,
        in_channels: int,
        width: float,
    ):
        super().__init__()
        self.normalize = Normalize(in_channels)
        in_planes = scale_channels(64, width)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, in_planes, 3, padding=1, bias=False),
            nn.BatchNorm2d(in_planes),
            nn.ReLU(),
        )
        stages = []
        for i, (base, n) in enumerate(zip((64, 128, 256, 512), num_blocks, strict=True)):
            planes = scale_channels(base, width)
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                stages.append(block(in_planes, planes, stride))
                in_planes = planes * block.expansion
        self.features = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(self.stem(self.normalize(x)))
        return self.fc(torch.flatten(self.pool(out), 1))


@register("resnet18")
def resnet18(num_classes: int, in_channels: int, width: float) -> nn.Module:
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, width)


@register("resnet50")
def resnet50(num_classes: int, in_channels: int, width: float) -> nn.Module:
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, width)
