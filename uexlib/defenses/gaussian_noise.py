"""Gaussian noise on every training batch (Berns 2021, thesis Sec. 3.4.2, Figs. 3.6-3.7).

Zero-mean noise of standard deviation ``sigma`` (the thesis: 0.05, 0.1, 0.2 on the [0, 1] scale)
is added to each augmented image, then clipped to [0, 1]; a fresh draw every step.
"""
from __future__ import annotations

import torch

from ..color import to_grayscale
from ..runtime import check_choice, check_float
from . import DEFENSES
from .base import Defense, StepContext


@DEFENSES.register("gaussian-noise", "additive Gaussian noise per image and step (thesis Sec. 3.4.2)")
class GaussianNoise(Defense):
    """Add N(0, ``sigma``^2) noise to every pixel of every training image, then clip to [0, 1].

    Args:
        sigma: standard deviation on the [0, 1] scale (0.1; the thesis: 0.05, 0.1, 0.2).
        grayscale: turn the noisy image to grayscale afterwards (thesis Fig. 3.7 and Table 3.6:
            "transforming the images with added Gaussian noise into grayscale images").
    """

    def __init__(self, sigma: float = 0.1, grayscale: bool = False):
        check_float("sigma", sigma, 0.0, 1.0, low_open=True)
        check_choice("grayscale", grayscale, (False, True))
        self.params = {"sigma": sigma, "grayscale": grayscale}

    def transform(self, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.randn(x.shape, device=x.device, generator=ctx.generator, dtype=x.dtype)
        noisy = (x + self.params["sigma"] * noise).clamp(0, 1)
        return (to_grayscale(noisy) if self.params["grayscale"] else noisy), y
