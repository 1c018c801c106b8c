"""Cutout (DeVries and Taylor, 2017): zero one random square of every training image.

The ST paper's counter-overfitting baseline (App. A.1, Table 5) with mask size 16 on CIFAR.
"""
from __future__ import annotations

import torch

from ..runtime import check_int
from . import DEFENSES
from .base import Defense, StepContext


def cutout_mask(n: int, height: int, width: int, size: int, gen: torch.Generator | None,
                device: torch.device) -> torch.Tensor:
    """(N, 1, H, W) float mask, 0 inside one ``size`` x ``size`` square per image, 1 elsewhere.

    Each square's centre is uniform over the image; squares reaching past a border are clipped
    there (so fewer pixels are cut), as in DeVries and Taylor's implementation.
    """
    cy = torch.randint(0, height, (n, 1, 1), device=device, generator=gen)
    cx = torch.randint(0, width, (n, 1, 1), device=device, generator=gen)
    rows = torch.arange(height, device=device).view(1, -1, 1)
    cols = torch.arange(width, device=device).view(1, 1, -1)
    half = size // 2
    inside = (rows >= cy - half) & (rows < cy - half + size) & (cols >= cx - half) & (cols < cx - half + size)
    return (~inside).float().unsqueeze(1)


@DEFENSES.register("cutout", "Cutout: zero one random square per image (DeVries & Taylor 2017; ST Table 5)")
class Cutout(Defense):
    """Zero one ``size`` x ``size`` square at a uniform random centre of every training image.

    Args:
        size: side of the square in pixels (16, the ST paper's and DeVries and Taylor's CIFAR-10 value).
    """

    def __init__(self, size: int = 16):
        check_int("size", size, low=1)
        self.params = {"size": size}

    def transform(self, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = x.shape
        return x * cutout_mask(n, h, w, self.params["size"], ctx.generator, x.device).to(x.dtype), y
