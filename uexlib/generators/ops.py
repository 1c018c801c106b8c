"""One-pixel shortcut, OPS (Wu, Chen, Xu, Ma, Wang and Chen, ICLR 2023).

Every image of a class gets the same pixel set to the same colour, chosen so that it stands out
from that class's own images as much and as consistently as possible. For class k, each position
(r, c) and each corner colour v of the colour cube ({0, 1}^C) is scored by the deviation
``|v - x|`` of the class's images at that position, over images and channels:

    score(r, c, v) = mean |v - x[:, :, r, c]| / std |v - x[:, :, r, c]|

(large and stable deviation); the best (position, colour) pair not already taken by an earlier
class is chosen. The perturbation replaces that pixel by ``v`` in every image of the class: L0 of
one pixel, no bound on its size. Standard deviation is the population one; the authors' public
code scores the same way and walks the classes in order.
"""
from __future__ import annotations

import itertools
import time

import torch

from ..artifacts import Poison, check_budget
from ..data import ImageDataset
from . import register


def one_pixel_choices(dataset: ImageDataset, chunk: int = 2048) -> list[tuple[int, int, tuple[int, ...]]]:
    """Per class, in class order: (row, column, colour) of its pixel, colour a corner of the cube."""
    c, h, w = dataset.shape
    colours = torch.tensor(list(itertools.product((0.0, 1.0), repeat=c)))       # (2^C, C)
    taken: set[tuple[int, int, int]] = set()
    choices = []
    for k in range(dataset.num_classes):
        rows = (dataset.labels == k).nonzero().flatten()
        if len(rows) == 0:
            raise ValueError(f"class {k} has no images; OPS needs every class present")
        sums = torch.zeros(len(colours), h, w, dtype=torch.float64)
        squares = torch.zeros_like(sums)
        for start in range(0, len(rows), chunk):
            x = dataset.images[rows[start:start + chunk]].double() / 255                  # (n, C, H, W)
            deviation = (colours.double().view(-1, 1, c, 1, 1) - x.unsqueeze(0)).abs()   # (2^C, n, C, H, W)
            sums += deviation.sum(dim=(1, 2))
            squares += deviation.square().sum(dim=(1, 2))
        count = len(rows) * c
        mean = sums / count
        std = (squares / count - mean.square()).clamp_min(0).sqrt()
        score = mean / std.clamp_min(1e-12)
        for v, r, col in taken:
            score[v, r, col] = float("-inf")
        v, r, col = (int(i) for i in torch.unravel_index(score.argmax(), score.shape))
        taken.add((v, r, col))
        choices.append((r, col, tuple(int(t) for t in colours[v].tolist())))
    return choices


@register("ops", "one-pixel shortcut: one searched pixel and colour per class, L0 = 1 (Wu et al. 2023)")
class OnePixelShortcut:
    """Set one pixel per class (the same position and corner colour for all its images).

    No parameters: the position and colour of each class are searched on the data (the paper's
    criterion, module docstring); the metadata records them.

    Example:
        >>> poison = ue.generators.create("ops").generate(train_set)
    """

    def __init__(self):
        self.params = {}

    def generate(self, dataset: ImageDataset) -> Poison:
        started = time.perf_counter()
        choices = one_pixel_choices(dataset)
        clean = dataset.images.float() / 255
        delta = torch.zeros_like(clean)
        for k, (r, col, colour) in enumerate(choices):
            rows = (dataset.labels == k).nonzero().flatten()
            target = torch.tensor(colour, dtype=torch.float32).view(1, -1)
            delta[rows, :, r, col] = target - clean[rows, :, r, col]
        check_budget(delta, "l0", 1)
        metadata = {"method": "ops", "params": {}, "norm": "l0", "radius": 1, "seed": None,
                    "pixels": [{"class": k, "row": r, "column": col, "colour": list(colour)}
                               for k, (r, col, colour) in enumerate(choices)],
                    "wall_s": time.perf_counter() - started, "device": "cpu"}
        return Poison.from_perturbation(dataset, delta, metadata, classwise=False)
