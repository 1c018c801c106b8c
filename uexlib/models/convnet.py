"""The two-convolution MNIST network of the thesis (Berns 2021, Sec. 3.3.1).

Two 5x5 convolutions with 32 and 64 filters, each followed by ReLU and a 2x2 max-pool, then a
fully connected layer of 1024 units with ReLU and the linear head: the network of Madry et al.'s
MNIST experiments, which the thesis trains on MNIST. The thesis does not print the kernel size;
5x5 is Madry et al.'s. An adaptive pool to 7x7 (the identity at 28x28 input) lets it take any
image size.
"""

import torch
from torch import nn

from . import register
from .layers import Normalize, scale_channels


class ConvNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, width: float):
        super().__init__()
        first, second, hidden = scale_channels(32, width), scale_channels(64, width), scale_channels(1024, width)
        self.normalize = Normalize(in_channels)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, first, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(first, second, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(7))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(second * 49, hidden), nn.ReLU(),
                                        nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))


@register("convnet")
def convnet(num_classes: int, in_channels: int, width: float) -> nn.Module:
    return ConvNet(num_classes, in_channels, width)
