"""Mixup (Zhang et al., ICLR 2018) and CutMix (Yun et al., ICCV 2019): train on pairs of images.

Both draw one ``lam ~ Beta(alpha, alpha)`` per batch, pair every image with a random other one of
the batch, and weight the two labels' cross-entropies by ``lam`` and ``1 - lam``. Mixup blends
the two images; CutMix pastes a box of the partner (area ``1 - lam``, one box per batch as in the
paper) and sets ``lam`` to the share of pixels actually kept. The ST paper's baselines (Table 5).
"""
from __future__ import annotations

import numpy as np
import torch

from ..runtime import check_float
from . import DEFENSES
from .base import Defense, StepContext, cross_entropy, draw_seed


def _beta(alpha: float, gen: torch.Generator | None, device: torch.device) -> float:
    """One Beta(alpha, alpha) draw from the step's generator (torch has no seeded Beta sampler)."""
    return float(np.random.default_rng(draw_seed(gen, device)).beta(alpha, alpha))


class _Mix(Defense):
    def loss(self, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        lam = _beta(self.params["alpha"], ctx.generator, x.device)
        partner = torch.randperm(len(x), device=x.device, generator=ctx.generator)
        mixed, lam = self.mix(x, x[partner], lam, ctx.generator)
        logits = ctx.forward(mixed)
        return lam * cross_entropy(logits, y) + (1 - lam) * cross_entropy(logits, y[partner]), logits

    def mix(self, x, other, lam, gen):
        raise NotImplementedError


@DEFENSES.register("mixup", "Mixup: convex blends of image pairs and their labels (Zhang et al. 2018)")
class Mixup(_Mix):
    """Train on ``lam * x + (1 - lam) * x'`` with the labels weighted alike (Zhang et al., eq. 1).

    Args:
        alpha: ``lam ~ Beta(alpha, alpha)`` (1.0: uniform, the CIFAR-10 setting of the paper).
    """

    def __init__(self, alpha: float = 1.0):
        check_float("alpha", alpha, 0.0, 100.0, low_open=True)
        self.params = {"alpha": alpha}

    def mix(self, x, other, lam, gen):
        return lam * x + (1 - lam) * other, lam


@DEFENSES.register("cutmix", "CutMix: paste a box of another image, labels by area (Yun et al. 2019)")
class CutMix(_Mix):
    """Paste a box of side ``sqrt(1 - lam)`` times the image's from the partner image (Yun et al., eq. 1-2).

    Args:
        alpha: ``lam ~ Beta(alpha, alpha)`` (1.0, the paper's CIFAR setting).
    """

    def __init__(self, alpha: float = 1.0):
        check_float("alpha", alpha, 0.0, 100.0, low_open=True)
        self.params = {"alpha": alpha}

    def mix(self, x, other, lam, gen):
        _, _, h, w = x.shape
        ratio = (1 - lam) ** 0.5
        cut_h, cut_w = int(h * ratio), int(w * ratio)
        cy = int(torch.randint(0, h, (1,), device=x.device, generator=gen))
        cx = int(torch.randint(0, w, (1,), device=x.device, generator=gen))
        top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h - cut_h // 2, h)
        left, right = max(cx - cut_w // 2, 0), min(cx + cut_w - cut_w // 2, w)
        mixed = x.clone()
        mixed[:, :, top:bottom, left:right] = other[:, :, top:bottom, left:right]
        return mixed, 1 - (bottom - top) * (right - left) / (h * w)
