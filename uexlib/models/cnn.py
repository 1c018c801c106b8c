"""Small fast CNN for CPU runs on MNIST (28x28x1) and CIFAR (32x32x3).

A VGG-style stack (Simonyan & Zisserman, Very Deep Convolutional Networks
for Large-Scale Image Recognition, ICLR 2015) with batch normalization
(Ioffe & Szegedy, ICML 2015): three blocks of 3x3 conv-BN-ReLU layers, each
ending in a 2x2 max-pool, then global average pooling and a linear head.
"""

import torch
from torch import nn

from . import register
from .layers import Normalize, scale_channels

# (base channels, conv layers) per block. The first block keeps a single conv:
# at full resolution a second one costs as many FLOPs as a later block's but
# moves 4-16x more activation memory, and at equal CPU training time it did
# not improve CIFAR-10 accuracy.
_BLOCKS = [(32, 1), (64, 2), (128, 2)]


def _conv_bn_relu(in_channels: int, out_channels: int) -> list:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU()]


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, width: float):
        super().__init__()
        self.normalize = Normalize(in_channels)
        layers = []
        channels = in_channels
        for base, convs in _BLOCKS:
            out = scale_channels(base, width)
            for _ in range(convs):
                layers += _conv_bn_relu(channels, out)
                channels = out
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(self.normalize(x))
        return self.fc(torch.flatten(self.pool(out), 1))


@register("cnn")
def cnn(num_classes: int, in_channels: int, width: float) -> nn.Module:
    return SmallCNN(num_classes, in_channels, width)
