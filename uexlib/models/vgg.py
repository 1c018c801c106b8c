"""VGG-16 with batch normalization, CIFAR variant.

Simonyan & Zisserman, Very Deep Convolutional Networks for Large-Scale Image
Recognition, ICLR 2015 (batch normalization from Ioffe & Szegedy, ICML 2015).
The five pooling stages reduce a 32x32 input to 1x1, followed by a single
linear classifier instead of the ImageNet three-layer head.
"""

import torch
from torch import nn

from . import register
from .layers import Normalize, scale_channels

# Output channels per conv layer; "M" is a 2x2 max-pool.
_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, width: float):
        super().__init__()
        self.normalize = Normalize(in_channels)
        layers = []
        channels = in_channels
        for item in _VGG16:
            if item == "M":
                # ceil_mode keeps sizes like 28 (-> 14, 7, 4, 2, 1) from shrinking to 0
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            else:
                out = scale_channels(item, width)
                layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
                channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(self.normalize(x))
        return self.fc(torch.flatten(self.pool(out), 1))


@register("vgg16")
def vgg16(num_classes: int, in_channels: int, width: float) -> nn.Module:
    return VGG(num_classes, in_channels, width)
