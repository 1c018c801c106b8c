"""Linearly separable synthetic perturbations, LSP (Yu et al., KDD 2022), under an L2 budget.

The noise of :mod:`uexlib.generators.sc` (separable class clusters stretched over flat patches),
each image's rescaled to L2 norm ``eps`` (shrunk slightly where rounding to 8-bit images would
push it past), by default ``sqrt(d) * 6/255`` for ``d`` pixels x
channels (1.30 on CIFAR), the authors' public code's setting. The D-VAE paper's Table 2 lists LSP
with an L2 budget of 1.0; pass ``eps=1.0`` for that column.
"""
from __future__ import annotations

import math
import time

from ..artifacts import Poison, scale_to_budget
from ..data import ImageDataset
from ..runtime import check_float, check_int
from . import register
from .sc import synthetic_noise


@register("lsp", "synthetic shortcut noise under an L2 budget, sqrt(d)*6/255 by default (Yu et al. 2022)")
class LinearlySeparablePerturbations:
    """Sample-wise synthetic shortcut noise with every image's L2 norm equal to ``eps``.

    Args:
        eps: L2 radius on the [0, 1] scale; None (default) is ``sqrt(C*H*W) * 6/255``.
        patch: side of the flat blocks (8).
        class_sep: cluster centre distance per axis (10).
        seed: seeds the clusters and the points.
    """

    def __init__(self, eps: float | None = None, patch: int = 8, class_sep: float = 10.0, seed: int = 0):
        if eps is not None:
            check_float("eps", eps, 0.0, 1e4, low_open=True)
        check_int("patch", patch, low=1)
        check_float("class_sep", class_sep, 0.0, 1e6, low_open=True)
        check_int("seed", seed, low=0)
        self.params = {"eps": eps, "patch": patch, "class_sep": class_sep, "seed": seed}

    def generate(self, dataset: ImageDataset) -> Poison:
        p = self.params
        started = time.perf_counter()
        radius = p["eps"] if p["eps"] is not None else math.sqrt(math.prod(dataset.shape)) * 6 / 255
        noise = synthetic_noise(dataset, p["patch"], p["class_sep"], p["seed"])
        delta = scale_to_budget(dataset.images, noise, "l2", radius)
        metadata = {"method": "lsp", "params": {**p, "eps": radius}, "norm": "l2", "radius": radius,
                    "seed": p["seed"], "wall_s": time.perf_counter() - started, "device": "cpu"}
        return Poison.from_perturbation(dataset, delta, metadata, classwise=False)
