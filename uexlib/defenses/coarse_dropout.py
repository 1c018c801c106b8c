"""Coarse dropout as the thesis uses it (Berns 2021, App. A.5, Fig. A.4).

The image is divided into a ``grid`` x ``grid`` of blocks; in each block, with probability ``p``,
one colour channel (drawn uniformly) is set to zero. The thesis' two settings name the block by
its share of the image: 11.11 % (a 3 x 3 grid) and 6.25 % (4 x 4), each with p = 10 %. Blocks
are as equal as the image size allows (row ``r`` belongs to block ``r * grid // H``).
"""
from __future__ import annotations

import torch

from ..runtime import check_float, check_int
from . import DEFENSES
from .base import Defense, StepContext


def dropout_mask(shape: tuple[int, int, int, int], grid: int, p: float, gen: torch.Generator | None,
                 device: torch.device) -> torch.Tensor:
    """(N, C, H, W) float mask: 0 on the channel dropped in each dropped block, 1 elsewhere."""
    n, c, h, w = shape
    dropped = torch.rand(n, 1, grid, grid, device=device, generator=gen) < p
    channel = torch.randint(0, c, (n, 1, grid, grid), device=device, generator=gen)
    blocks = dropped & (channel == torch.arange(c, device=device).view(1, c, 1, 1))   # (N, C, grid, grid)
    rows = torch.arange(h, device=device) * grid // h
    cols = torch.arange(w, device=device) * grid // w
    return (~blocks[:, :, rows][:, :, :, cols]).float()


@DEFENSES.register("coarse-dropout", "drop one channel of random grid blocks (thesis App. A.5)")
class CoarseDropout(Defense):
    """Per image and block of a ``grid`` x ``grid`` grid, zero one random channel with probability ``p``.

    Args:
        grid: blocks per side (3: blocks of 11.11 % of the image, the thesis' "coarse dropout 1";
            4: 6.25 %, "coarse dropout 2").
        p: probability that a block loses a channel (0.1).
    """

    def __init__(self, grid: int = 3, p: float = 0.1):
        check_int("grid", grid, low=1)
        check_float("p", p, 0.0, 1.0)
        self.params = {"grid": grid, "p": p}

    def transform(self, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        mask = dropout_mask(tuple(x.shape), self.params["grid"], self.params["p"], ctx.generator, x.device)
        return x * mask.to(x.dtype), y
