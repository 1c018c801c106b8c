"""Synthetic shortcuts, SC (Yu, Zhang, Chen, Yin and Liu, "Availability attacks create shortcuts", KDD 2022).

No model is involved: the noise is a synthetic, linearly separable classification problem drawn
in a low-dimensional space and stretched over the image, so that each class carries its own
simple pattern. Three stages (the SEM paper's App. description of SC):

1. class-wise initial points: one Gaussian cluster per class in ``d = C * (H/patch) * (W/patch)``
   dimensions, centred on a distinct vertex of the hypercube ``{-class_sep, +class_sep}^d`` and
   shaped by a per-class random linear map (entries uniform in [-1, 1]); each image draws its own
   point from its class's cluster (sample-wise noise);
2. duplication for local correlation: each coordinate becomes a flat ``patch`` x ``patch`` block
   of one channel (the image cropped to H x W);
3. magnitude rescaling to the budget.

``sc`` rescales every image's noise to L-inf ``eps`` (SEM's "norm size 8/255"); ``lsp``
(:mod:`uexlib.generators.lsp`) is the same noise rescaled to an L2 budget. The authors' public
code draws the points with scikit-learn's ``make_classification`` (class_sep 10) and rescales to
L2 ``eps * sqrt(d)``; the cluster construction here is the same recipe written in torch.
"""
from __future__ import annotations

import time

import torch

from ..artifacts import Poison, scale_to_budget
from ..data import ImageDataset
from ..runtime import check_eps, check_float, check_int
from . import register


def synthetic_points(labels: torch.Tensor, num_classes: int, dim: int, class_sep: float,
                     gen: torch.Generator) -> torch.Tensor:
    """(N, dim) points, row i from the Gaussian cluster of class ``labels[i]`` (stage 1)."""
    if 2 ** min(dim, 62) < num_classes:
        raise ValueError(f"{num_classes} classes need distinct hypercube vertices; dim {dim} has too few")
    vertices = set()
    centres = []
    while len(centres) < num_classes:
        signs = torch.randint(0, 2, (dim,), generator=gen) * 2 - 1
        key = tuple(signs.tolist())
        if key not in vertices:
            vertices.add(key)
            centres.append(signs.float() * class_sep)
    points = torch.empty(len(labels), dim)
    for k in range(num_classes):
        rows = (labels == k).nonzero().flatten()
        mixing = torch.rand(dim, dim, generator=gen) * 2 - 1
        points[rows] = torch.randn(len(rows), dim, generator=gen) @ mixing + centres[k]
    return points


def stretch(points: torch.Tensor, shape: tuple[int, int, int], patch: int) -> torch.Tensor:
    """(N, C, H, W): each coordinate of a point as a flat ``patch`` x ``patch`` block (stage 2)."""
    c, h, w = shape
    rows, cols = -(-h // patch), -(-w // patch)
    grid = points.view(len(points), c, rows, cols)
    return grid.repeat_interleave(patch, dim=2).repeat_interleave(patch, dim=3)[:, :, :h, :w]


def synthetic_noise(dataset: ImageDataset, patch: int, class_sep: float, seed: int) -> torch.Tensor:
    """Unscaled synthetic shortcut noise for every image of ``dataset`` (stages 1 and 2)."""
    c, h, w = dataset.shape
    dim = c * -(-h // patch) * -(-w // patch)
    gen = torch.Generator().manual_seed(seed)
    return stretch(synthetic_points(dataset.labels, dataset.num_classes, dim, class_sep, gen), dataset.shape, patch)


@register("sc", "synthetic shortcuts: separable class clusters stretched over patches, L-inf (Yu et al. 2022)")
class SyntheticShortcuts:
    """Sample-wise synthetic shortcut noise, each image's scaled to L-inf ``eps`` (SEM App.: 8/255, patch 8).

    Args:
        eps: L-inf radius on the [0, 1] scale (8/255).
        patch: side of the flat blocks each coordinate fills (8, the papers' "frame size").
        class_sep: half the distance between cluster centres along each axis (10, as the authors').
        seed: seeds the clusters and the points.

    Example:
        >>> poison = ue.generators.create("sc").generate(train_set)
    """

    def __init__(self, eps: float = 8 / 255, patch: int = 8, class_sep: float = 10.0, seed: int = 0):
        check_eps(eps)
        check_int("patch", patch, low=1)
        check_float("class_sep", class_sep, 0.0, 1e6, low_open=True)
        check_int("seed", seed, low=0)
        self.params = {"eps": eps, "patch": patch, "class_sep": class_sep, "seed": seed}

    def generate(self, dataset: ImageDataset) -> Poison:
        p = self.params
        started = time.perf_counter()
        noise = synthetic_noise(dataset, p["patch"], p["class_sep"], p["seed"])
        delta = scale_to_budget(dataset.images, noise, "linf", p["eps"])
        metadata = {"method": "sc", "params": p, "norm": "linf", "radius": p["eps"], "seed": p["seed"],
                    "wall_s": time.perf_counter() - started, "device": "cpu"}
        return Poison.from_perturbation(dataset, delta, metadata, classwise=False)
