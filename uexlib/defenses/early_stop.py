"""Early stopping on a validation split held out of the (protected) training set (SEM Table 5).

SEM (Liu et al., AAAI 2024, "Resistance to early stopping") holds out 10 % of the unlearnable
training examples as the validation set and stops when its accuracy has not improved for
``S_es`` steps; the model of the best validation epoch is kept. Patience here is counted in
epochs, the unit in which the trainer validates (SEM's 3,000-20,000 steps at batch 128 on
CIFAR-10 are 8-51 epochs).
"""
from __future__ import annotations

import torch

from ..data import ImageDataset
from ..runtime import check_float, check_int
from . import DEFENSES
from .base import Defense


@DEFENSES.register("early-stop", "stop when a held-out validation split stops improving (SEM Table 5)")
class EarlyStop(Defense):
    """Hold out ``val_fraction`` of the training set (per class, seeded); stop after ``patience``
    epochs without a better validation accuracy; return the best epoch's model.

    Args:
        patience: epochs without improvement before training stops (3).
        val_fraction: share of every class held out for validation (0.1, SEM's 10 %).
    """

    def __init__(self, patience: int = 3, val_fraction: float = 0.1):
        check_int("patience", patience, low=1)
        check_float("val_fraction", val_fraction, 0.0, 0.5, low_open=True)
        self.params = {"patience": patience, "val_fraction": val_fraction}

    def hold_out(self, train_set: ImageDataset, seed: int) -> tuple[ImageDataset, ImageDataset]:
        gen = torch.Generator().manual_seed(seed)
        held = []
        for label in train_set.labels.unique().tolist():
            rows = (train_set.labels == label).nonzero().flatten()
            count = max(1, round(self.params["val_fraction"] * len(rows)))
            held.append(rows[torch.randperm(len(rows), generator=gen)[:count]])
        held = torch.cat(held).sort().values
        keep = torch.ones(len(train_set), dtype=torch.bool)
        keep[held] = False
        return train_set.take(keep.nonzero().flatten()), train_set.take(held)

    def stop(self, history: list[dict]) -> bool:
        accs = [row["val_acc"] for row in history]
        best = max(range(len(accs)), key=accs.__getitem__)
        return len(accs) - 1 - best >= self.params["patience"]
