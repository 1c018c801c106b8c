"""Early stopping on a validation split held out of the (protected) training set (SEM Table 5).

SEM (Liu et al., AAAI 2024, "Resistance to Early Stopping and Partial Poisoning", Table 5)
holds out 10 % of the unlearnable training examples as the validation set, stops when its
accuracy has not improved for ``S_es`` steps, and varies the share of clean images in that
validation set from 0 to 70 %. The table's "Before" cell is SEM data under adversarial training
of radius 4/255, so early stopping there runs on top of adversarial training: ``inner`` is the
defense that does the training while this one holds out and stops.

Differences from the paper, stated: patience is counted in epochs, the unit in which the trainer
validates (SEM's 3,000-25,000 steps of a 40,000-step run at batch 128 are 8-63 epochs of
CIFAR-10); and the paper does not say where its clean validation images come from, so here a
``clean_ratio`` share of the held-out rows of every class shows its clean original instead of
its protected image (the defender is given those clean images; no other row changes).
"""
from __future__ import annotations

import torch

from ..data import ImageDataset
from ..runtime import check_float, check_int
from . import DEFENSES
from .base import Defense, StepContext


def _best(val_accs: list[float]) -> int:
    """The first epoch of highest validation accuracy (the one the trainer keeps)."""
    return max(range(len(val_accs)), key=val_accs.__getitem__)


def _patience_spent(val_accs: list[float], patience: int) -> bool:
    return len(val_accs) - 1 - _best(val_accs) >= patience


def stopping_point(val_accs: list[float], patience: int) -> tuple[int, int]:
    """``(last epoch trained, epoch kept)`` of early stopping with ``patience`` on the per-epoch
    validation accuracies of a run that did not stop sooner: the run under a smaller patience
    trains exactly the same epochs up to its stop (same seed, same held-out rows), so its cells
    can be read off the longer run's history."""
    check_int("patience", patience, low=1)
    for last in range(1, len(val_accs) + 1):
        if _patience_spent(val_accs[:last], patience):
            return last - 1, _best(val_accs[:last])
    return len(val_accs) - 1, _best(val_accs)


def _registry_name(defense: Defense) -> str:
    return next(name for name in DEFENSES.names() if DEFENSES.get(name) is type(defense))


@DEFENSES.register("early-stop", "stop when a held-out validation split stops improving (SEM Table 5)")
class EarlyStop(Defense):
    """Hold out ``val_fraction`` of every class (seeded); train under ``inner``; stop after
    ``patience`` epochs without a better validation accuracy; return the best epoch's model.

    Args:
        patience: epochs without improvement before training stops (3).
        val_fraction: share of every class held out for validation (0.1, SEM's 10 %).
        clean_ratio: share of the held-out rows of every class shown as their clean originals
            (SEM Table 5: 0, 10, 30, 50, 70 %); above 0 it needs ``clean_set``.
        inner: the training-time defense that trains, a registry name or a made defense
            (``"none"``: ordinary training; SEM Table 5 uses PGD adversarial training at 4/255).
        clean_set: the clean training set the protected one was made from (rows matched by
            ``indices``); ``Experiment.defense`` passes the experiment's training set.
    """

    def __init__(self, patience: int = 3, val_fraction: float = 0.1, clean_ratio: float = 0.0,
                 inner: str | Defense = "none", clean_set: ImageDataset | None = None):
        check_int("patience", patience, low=1)
        check_float("val_fraction", val_fraction, 0.0, 0.5, low_open=True)
        check_float("clean_ratio", clean_ratio, 0.0, 1.0)
        if isinstance(inner, str):
            inner = DEFENSES.create(inner)
        if not isinstance(inner, Defense) or isinstance(inner, EarlyStop):
            raise ValueError(f"inner must be a training-time defense other than early-stop (a name from "
                             f"{', '.join(n for n in DEFENSES.names() if n != 'early-stop')}), got {inner!r}")
        if clean_set is not None and not isinstance(clean_set, ImageDataset):
            raise ValueError(f"clean_set must be a uexlib ImageDataset, got {type(clean_set).__name__}")
        if clean_ratio > 0 and clean_set is None:
            raise ValueError("clean_ratio > 0 needs clean_set, the clean training set the protected one was "
                             "made from (Experiment.defense('early-stop', ...) passes it)")
        self.inner, self.clean_set = inner, clean_set
        self.params = {"patience": patience, "val_fraction": val_fraction, "clean_ratio": clean_ratio,
                       "inner": {"name": _registry_name(inner), **inner.params}}

    def hold_out(self, train_set: ImageDataset, seed: int) -> tuple[ImageDataset, ImageDataset]:
        gen = torch.Generator().manual_seed(seed)
        held, clean = [], []
        for label in train_set.labels.unique().tolist():
            rows = (train_set.labels == label).nonzero().flatten()
            count = max(1, round(self.params["val_fraction"] * len(rows)))
            chosen = rows[torch.randperm(len(rows), generator=gen)[:count]]
            held.append(chosen)
            clean.append(chosen[:round(self.params["clean_ratio"] * count)])
        held, clean = torch.cat(held).sort().values, torch.cat(clean)
        keep = torch.ones(len(train_set), dtype=torch.bool)
        keep[held] = False
        val_set = train_set.take(held)
        if len(clean):
            val_set = val_set.with_images(self._with_clean_rows(train_set, held, clean),
                                          source=f"{train_set.source}, {self.params['clean_ratio']:.0%} of it clean")
        return train_set.take(keep.nonzero().flatten()), val_set

    def _with_clean_rows(self, train_set: ImageDataset, held: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """The held-out images with the rows ``clean`` (positions in ``train_set``) replaced by
        the clean set's images of the same split rows."""
        position = {int(i): p for p, i in enumerate(self.clean_set.indices.tolist())}
        wanted = train_set.indices[clean].tolist()
        missing = [i for i in wanted if i not in position]
        if missing or self.clean_set.name != train_set.name or self.clean_set.split != train_set.split:
            raise ValueError(f"clean_set ({self.clean_set.name}/{self.clean_set.split}) does not hold the clean "
                             f"originals of the training rows ({train_set.name}/{train_set.split}, "
                             f"{len(missing)} rows missing)")
        source = torch.tensor([position[i] for i in wanted])
        if not torch.equal(self.clean_set.labels[source], train_set.labels[clean]):
            raise ValueError("clean_set's labels differ from the training set's on the same rows")
        images = train_set.images[held].clone()
        images[torch.searchsorted(held, clean)] = self.clean_set.images[source]
        return images

    def stop(self, history: list[dict]) -> bool:
        accs = [row["val_acc"] for row in history]
        return _patience_spent(accs, self.params["patience"]) or self.inner.stop(history)

    # Everything else is the inner defense's.
    def transform(self, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inner.transform(x, y, ctx)

    def loss(self, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inner.loss(x, y, ctx)

    def attach(self, model: torch.nn.Module) -> None:
        self.inner.attach(model)

    def param_groups(self, model: torch.nn.Module) -> list[dict] | None:
        return self.inner.param_groups(model)

    def start(self, trainer, train_set: ImageDataset, seed: int) -> None:
        self.inner.start(trainer, train_set, seed)

    def lr_multiplier(self, trainer) -> float | None:
        return self.inner.lr_multiplier(trainer)

    def on_epoch_end(self, trainer, epoch: int) -> dict:
        return self.inner.on_epoch_end(trainer, epoch)

    def key(self) -> dict:
        key = {**super().key(), "inner": self.inner.key()}
        if self.params["clean_ratio"] > 0:
            key["clean_set"] = self.clean_set.fingerprint()
        return key

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)
