"""What every surrogate-based generator shares: its SGD settings, its checks and its checkpoint.

EM, REM and SEM train a surrogate with :class:`uexlib.train.Trainer` while they optimize the
noise; the settings below mean the same in each of them and are checked in one place.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .. import models
from ..data import ImageDataset
from ..runtime import atomic_torch_save, check_choice, check_float, check_int
from ..train import Trainer

# Batch-norm statistics of the surrogate while noise is optimized.
BN_MODES = ("train", "eval")


def check_surrogate(*, surrogate: str, bn_mode: str, batch_size: int, pgd_batch_size: int | None, lr: float,
                    seed: int, checkpoint_every: int) -> int:
    """Check the shared surrogate settings; return ``pgd_batch_size`` (default ``batch_size``)."""
    check_choice("surrogate", surrogate, models.list_models())
    check_choice("bn_mode", bn_mode, BN_MODES)
    check_int("batch_size", batch_size, low=1)
    pgd_batch_size = batch_size if pgd_batch_size is None else pgd_batch_size
    check_int("pgd_batch_size", pgd_batch_size, low=1)
    check_float("lr", lr, 0.0, 10.0, low_open=True)
    check_int("seed", seed, low=0)
    check_int("checkpoint_every", checkpoint_every, low=1)
    return pgd_batch_size


def surrogate_trainer(p: dict, dataset: ImageDataset, device: torch.device, *, total_steps: int,
                      schedule: str) -> Trainer:
    """A freshly initialized surrogate (seeded by ``p["seed"]``) and its SGD, from the settings ``p``."""
    check_int("batch_size", p["batch_size"], low=1, high=len(dataset))
    torch.manual_seed(p["seed"])
    model = models.create(p["surrogate"], dataset.num_classes, dataset.shape[0], p["surrogate_width"])
    return Trainer(model, total_steps=total_steps, lr=p["lr"], momentum=p["momentum"],
                   weight_decay=p["weight_decay"], schedule=schedule, milestones_iter=p["milestones_iter"],
                   device=device)


class Checkpoint:
    """An optional file holding a run's surrogate and state, keyed by everything that shapes the run.

    ``load`` refuses a file written by a run with another key, so a resumed run is never a mix.
    """

    def __init__(self, path: str | None, method: str):
        self.path, self.method = path, method

    def load(self, trainer: Trainer, key: dict) -> dict | None:
        """The saved state (and the trainer restored), or None when there is no file."""
        if not self.path or not Path(self.path).is_file():
            return None
        saved = torch.load(self.path, map_location=trainer.device, weights_only=False)
        if saved["key"] != key:
            raise ValueError(f"checkpoint {self.path} belongs to another {self.method} run; "
                             "delete it or pass another path")
        trainer.load_state_dict(saved["trainer"])
        return saved["state"]

    def save(self, trainer: Trainer, state: dict, key: dict) -> None:
        if self.path:
            atomic_torch_save({"key": key, "trainer": trainer.state_dict(), "state": state}, self.path)
