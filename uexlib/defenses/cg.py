"""CG: color jitter then random grayscale on every training batch (ST paper, Dang et al. 2023, App. A.1).

Jitter with probability 0.8 and grayscale with probability 0.2, per image, after the standard crop
and flip: :func:`uexlib.color.color_gray`, the transform REM-T also averages over.
"""
from __future__ import annotations

import torch

from ..color import color_gray
from ..runtime import check_float
from . import DEFENSES
from .base import Defense, StepContext


@DEFENSES.register("cg", "color jitter (p 0.8) then grayscale (p 0.2) per image (ST App. A.1)")
class ColorGray(Defense):
    """Per-image color jitter with probability ``jitter_p`` then grayscale with probability ``gray_p``."""

    def __init__(self, jitter_p: float = 0.8, gray_p: float = 0.2):
        check_float("jitter_p", jitter_p, 0.0, 1.0)
        check_float("gray_p", gray_p, 0.0, 1.0)
        self.params = {"jitter_p": jitter_p, "gray_p": gray_p}

    def transform(self, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        return color_gray(x, ctx.generator, self.params["jitter_p"], self.params["gray_p"]), y
