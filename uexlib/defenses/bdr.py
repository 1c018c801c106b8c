"""Bit-depth reduction (Xu et al., NDSS 2018, "feature squeezing"; ISS; D-VAE Table 2 "BDR").

Every channel value is quantized to ``2 ** bits`` evenly spaced levels of [0, 1]; ISS uses 2 bits.
Noise smaller than half a level is rounded away.
"""
from __future__ import annotations

import torch

from ..data import ImageDataset
from ..runtime import check_int
from . import PURIFIERS
from .base import Purifier, map_images


def reduce_bit_depth(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Float images in [0, 1] quantized to ``2 ** bits`` levels (0 and 1 included)."""
    check_int("bits", bits, low=1, high=8)
    levels = 2 ** bits - 1
    return torch.round(x.clamp(0, 1) * levels) / levels


@PURIFIERS.register("bdr", "bit-depth reduction to 2**bits levels (feature squeezing; ISS 2-bit)")
class BitDepthReduction(Purifier):
    """Quantize every channel to ``2 ** bits`` levels (``bits`` 1-8; ISS: 2).

    Example:
        >>> squeezed = ue.defenses.create_purifier("bdr", bits=2).apply(poison)
    """

    def __init__(self, bits: int = 2):
        check_int("bits", bits, low=1, high=8)
        self.params = {"bits": bits}

    def purify(self, dataset: ImageDataset) -> ImageDataset:
        bits = self.params["bits"]
        return dataset.with_images(map_images(dataset.images, lambda x: reduce_bit_depth(x, bits)))
