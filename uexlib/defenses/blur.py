"""Blurring every training batch: median blur (thesis App. A.5) and Gaussian filtering (ST Table 5).

The filters are :func:`uexlib.defenses.lowpass.lowpass` applied at every step to the augmented
batch (the purifier ``lowpass`` applies them once to the stored images instead).
"""
from __future__ import annotations

import torch

from . import DEFENSES
from .base import Defense, StepContext
from .lowpass import check_lowpass, lowpass


@DEFENSES.register("median-blur", "median filter on every batch (thesis App. A.5: 3x3)")
class MedianBlur(Defense):
    """Median filter of ``kernel`` x ``kernel`` (3, the thesis') on every training image."""

    def __init__(self, kernel: int = 3):
        check_lowpass("median", kernel, 1.0)
        self.params = {"kernel": kernel}

    def transform(self, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        return lowpass(x, "median", self.params["kernel"]), y


@DEFENSES.register("gaussian-filter", "Gaussian filter on every batch (ST Table 5: sigma 1.5, kernel 5)")
class GaussianFilter(Defense):
    """Gaussian filter of standard deviation ``sigma`` pixels over ``kernel`` x ``kernel`` (ST: 1.5, 5)."""

    def __init__(self, sigma: float = 1.5, kernel: int = 5):
        check_lowpass("gaussian", kernel, sigma)
        self.params = {"sigma": sigma, "kernel": kernel}

    def transform(self, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        return lowpass(x, "gaussian", self.params["kernel"], self.params["sigma"]), y
