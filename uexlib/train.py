"""The one training loop: SGD on a device-resident dataset, used by training and by every generator.

:class:`Trainer` owns the model (channels_last), the optimizer and its parameter groups, the
learning-rate schedule, bf16 autocast on CUDA, optional compilation and the attached
:class:`~uexlib.defenses.Defense`; :meth:`Trainer.step` is one SGD step, the same step a
generator's surrogate takes. :func:`train` is the simple call: epochs of steps, a clean
evaluation per epoch, a history, best-on-validation selection, checkpoints and resume.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .attacks import Evasion, autocast
from .data import AUGMENTS, DeviceLoader, ImageDataset
from .defenses import Defense, NoDefense, StepContext
from .runtime import atomic_torch_save, check_choice, check_float, check_int, generator
from .runtime import device as pick_device

SCHEDULES = ("multistep", "cosine", "onecycle", "constant")


@dataclass
class TrainResult:
    model: torch.nn.Module
    history: pd.DataFrame     # one row per epoch
    best_epoch: int | None    # epoch whose weights ``model`` holds when selecting on validation

    @property
    def test_acc(self) -> float:
        """Clean test accuracy of the returned model (the selected epoch's when selecting)."""
        row = self.history.iloc[-1] if self.best_epoch is None else \
            self.history.set_index("epoch").loc[self.best_epoch]
        return float(row["test_acc"])


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: ImageDataset | DeviceLoader, batch_size: int = 1000,
             device: str | torch.device = "auto", attack: Evasion | None = None, seed: int = 0) -> dict:
    """Accuracy (%) and mean cross-entropy of ``model`` on ``data``, no augmentation, eval mode.

    ``data`` is a dataset, or an unshuffled :class:`DeviceLoader` already on the device (so
    repeated evaluations do not copy the data again). With ``attack`` (an
    :class:`~uexlib.attacks.Evasion`), every batch is first perturbed by it against the model in
    eval mode, random starts drawn from ``seed``: the robust accuracy and loss.
    """
    if isinstance(data, ImageDataset):
        dev = pick_device(device) if isinstance(device, str) else device
        data = DeviceLoader(data, batch_size, dev, shuffle=False)
    dev = data.device
    was_training = model.training
    model.eval()
    gen = generator(seed, dev) if attack is not None else None
    loss_sum = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    for x, y, _ in data:
        if attack is not None:
            x = x + attack(model, x, y, gen)
        with autocast(dev):
            logits = model(x.contiguous(memory_format=torch.channels_last))
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    model.train(was_training)
    count = len(data.labels)
    return {"acc": 100.0 * correct.item() / count, "loss": loss_sum.item() / count}


def lr_multiplier(schedule: str, step: int, total_steps: int, steps_per_epoch: int, epochs: int,
                  milestones_iter: tuple[int, ...], decay: float) -> float:
    """Learning-rate factor at SGD step ``step``.

    multistep: ``decay`` at each of ``milestones_iter`` (by iteration, REM App. A.4);
    cosine: cosine annealing by epoch (thesis App. A.1); onecycle: linear warm-up over the first
    quarter then linear decay to zero, for short runs; constant: 1.
    """
    if schedule == "multistep":
        return decay ** sum(step >= m for m in milestones_iter)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * (step // steps_per_epoch) / epochs))
    if schedule == "onecycle":
        warm = max(1, total_steps // 4)
        return (step + 1) / warm if step < warm else max(0.0, (total_steps - step) / (total_steps - warm))
    return 1.0


class Trainer:
    """SGD on ``model`` with a schedule over ``total_steps`` steps, optionally under a defense.

    Args:
        model: moved to the device in channels_last (faster on CUDA tensor cores and on CPU oneDNN).
        total_steps: length of the schedule in SGD steps; steps_per_epoch: for the cosine schedule.
        lr, momentum, weight_decay, nesterov: SGD (0.1, 0.9, 5e-4 as in REM App. A.4).
        schedule: ``multistep`` (``lr_decay`` at ``milestones_iter``, default 40 % and 80 % of the
            steps), ``cosine``, ``onecycle`` or ``constant``.
        defense: a :class:`~uexlib.defenses.Defense`; its parameter groups carry an ``lr_factor``
            multiplying the schedule.
        compile: run the step through ``torch.compile`` (measure first: in issue 5's H100 run it
            was slower than eager at batch 512).
    """

    def __init__(self, model: torch.nn.Module, *, total_steps: int, steps_per_epoch: int = 1, lr: float = 0.1,
                 momentum: float = 0.9, weight_decay: float = 5e-4, nesterov: bool = False,
                 schedule: str = "multistep", milestones_iter: tuple[int, ...] | None = None,
                 lr_decay: float = 0.1, defense: Defense | None = None, device: str | torch.device = "auto",
                 compile: bool = False):
        check_int("total_steps", total_steps, low=1)
        check_int("steps_per_epoch", steps_per_epoch, low=1)
        check_float("lr", lr, 0.0, 10.0, low_open=True)
        check_float("momentum", momentum, 0.0, 1.0)
        check_float("weight_decay", weight_decay, 0.0, 1.0)
        check_choice("schedule", schedule, SCHEDULES)
        self.device = pick_device(device) if isinstance(device, str) else device
        self.defense = defense if defense is not None else NoDefense()
        self.model = model.to(self.device, memory_format=torch.channels_last)
        self.step_model = torch.compile(self.model) if compile else self.model
        self.defense.attach(self.model)
        groups = self.defense.param_groups(self.model) or [{"params": list(self.model.parameters())}]
        for group in groups:
            group.setdefault("lr_factor", 1.0)
        # Fused SGD: one kernel for the whole update on CUDA instead of a few per parameter.
        self.optimizer = torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay,
                                         nesterov=nesterov, fused=self.device.type == "cuda")
        self.base_lr, self.schedule, self.lr_decay = lr, schedule, lr_decay
        self.total_steps, self.steps_per_epoch = total_steps, steps_per_epoch
        self.milestones = tuple(milestones_iter) if milestones_iter else (int(0.4 * total_steps),
                                                                          int(0.8 * total_steps))
        self.steps_done = 0

    @property
    def epochs(self) -> int:
        return math.ceil(self.total_steps / self.steps_per_epoch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(self.device):
            return self.step_model(x.contiguous(memory_format=torch.channels_last))

    def schedule_factor(self, step: int, span_steps: int) -> float:
        """This trainer's schedule at ``step`` of a run of ``span_steps`` steps (the whole run or a
        phase of it; multistep milestones are scaled to the span)."""
        milestones = tuple(int(m * span_steps / self.total_steps) for m in self.milestones)
        return lr_multiplier(self.schedule, step, span_steps, self.steps_per_epoch,
                             math.ceil(span_steps / self.steps_per_epoch), milestones, self.lr_decay)

    def _set_lr(self) -> None:
        factor = self.defense.lr_multiplier(self)
        if factor is None:
            factor = self.schedule_factor(self.steps_done, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = self.base_lr * factor * group["lr_factor"]

    def step(self, x: torch.Tensor, y: torch.Tensor, epoch: int = 0,
             gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One SGD step on the batch under the defense; returns detached (loss, logits, labels used).

        Nothing here waits for the device: the caller accumulates metrics on the device.
        """
        if not self.model.training:
            self.model.train()
        ctx = StepContext(self, epoch, self.steps_done, gen)
        x, y = self.defense.transform(x, y, ctx)
        loss, logits = self.defense.loss(x, y, ctx)
        self._set_lr()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.steps_done += 1
        return loss.detach(), logits.detach(), y

    def state_dict(self) -> dict:
        # Each param group's lr_factor is saved and restored by the optimizer's own state_dict.
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "steps_done": self.steps_done, "defense": self.defense.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps_done = state["steps_done"]
        self.defense.load_state_dict(state["defense"])


def train(model: torch.nn.Module, train_set: ImageDataset, test_set: ImageDataset | None = None, *,
          epochs: int | None = None, iterations: int | None = None, batch_size: int = 128,
          lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 5e-4, nesterov: bool = False,
          schedule: str = "cosine", milestones_iter: tuple[int, ...] | None = None, lr_decay: float = 0.1,
          augment: str = "crop_flip", defense: Defense | None = None, val_set: ImageDataset | None = None,
          select_best: bool = False, checkpoint: str | os.PathLike | None = None, seed: int = 0,
          device: str = "auto", compile: bool = False, progress: bool = True) -> TrainResult:
    """Train ``model`` with SGD on ``train_set``; evaluate on clean ``test_set`` every epoch.

    Give the budget as ``epochs`` or ``iterations`` (SGD steps), not both. Every epoch is
    ``len(train_set) // batch_size`` full batches (the last partial batch is dropped, so every
    step has the same shape). ``milestones_iter`` defaults to 40 % and 80 % of the iterations
    (REM App. A.4: 16k and 32k of 40k). With ``select_best``, the weights of the epoch with the
    best ``val_set`` accuracy are returned (thesis App. A.1). ``defense`` attaches a training-time
    defense; one that holds out a validation set of its own (``early-stop``) trains on the rest,
    selects on it and may end training early. With ``checkpoint``, state is saved atomically after
    every epoch and a rerun with the same arguments and defense resumes from it, giving the same
    history as an uninterrupted run.
    """
    if (epochs is None) == (iterations is None):
        raise ValueError(f"give exactly one of epochs or iterations, got epochs={epochs}, iterations={iterations}")
    if epochs is not None:
        check_int("epochs", epochs, low=1)
    else:
        check_int("iterations", iterations, low=1)
    check_float("lr", lr, 0.0, 10.0, low_open=True)
    check_choice("schedule", schedule, SCHEDULES)
    check_choice("augment", augment, AUGMENTS)
    check_int("seed", seed, low=0)
    if defense is not None and not isinstance(defense, Defense):
        raise ValueError(f"defense must be a uexlib.defenses.Defense (e.g. ue.defenses.create('none')), "
                         f"got {type(defense).__name__}")
    if defense is not None:
        train_set, held_out = defense.hold_out(train_set, seed)
        if held_out is not None:
            if val_set is not None:
                raise ValueError(f"{type(defense).__name__} holds out its own validation set; pass no val_set")
            val_set, select_best = held_out, True
    if select_best and val_set is None:
        raise ValueError("select_best=True needs a val_set to select on")
    check_int("batch_size", batch_size, low=1, high=len(train_set))

    dev = pick_device(device)
    loader = DeviceLoader(train_set, batch_size, dev, shuffle=True, augment=augment, seed=seed, drop_last=True)
    # Moved to the device once, evaluated every epoch.
    eval_loaders = {prefix: DeviceLoader(dataset, 1000, dev, shuffle=False)
                    for prefix, dataset in (("test", test_set), ("val", val_set)) if dataset is not None}
    steps_per_epoch = len(loader)
    total_steps = iterations if iterations is not None else epochs * steps_per_epoch
    trainer = Trainer(model, total_steps=total_steps, steps_per_epoch=steps_per_epoch, lr=lr, momentum=momentum,
                      weight_decay=weight_decay, nesterov=nesterov, schedule=schedule,
                      milestones_iter=milestones_iter, lr_decay=lr_decay, defense=defense, device=dev,
                      compile=compile)

    config = {"epochs": epochs, "iterations": iterations, "batch_size": batch_size, "lr": lr,
              "momentum": momentum, "weight_decay": weight_decay, "nesterov": nesterov, "schedule": schedule,
              "milestones": trainer.milestones, "lr_decay": lr_decay, "augment": augment, "seed": seed,
              "train": train_set.fingerprint(), "select_best": select_best, "defense": trainer.defense.key()}
    trainer.defense.start(trainer, train_set, seed)
    rows, start_epoch, best = [], 0, {"acc": -1.0, "epoch": None, "state": None}
    if checkpoint is not None and Path(checkpoint).is_file():
        state = torch.load(checkpoint, map_location=dev, weights_only=False)
        if state["config"] != config:
            changed = sorted(k for k in config if state["config"].get(k) != config[k])
            raise ValueError(f"checkpoint {checkpoint} was written by a run with other arguments "
                             f"({', '.join(changed)} differ); delete it or pass another checkpoint path")
        trainer.load_state_dict(state["trainer"])
        rows, start_epoch, best = state["history"], state["epoch"] + 1, state["best"]

    if rows and trainer.defense.stop(rows):     # resumed from a run that had already stopped
        start_epoch = trainer.epochs
    bar = tqdm(range(start_epoch, trainer.epochs), desc="train", disable=not progress, leave=False)
    for epoch in bar:
        started = time.perf_counter()
        loader.set_epoch(epoch)
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev, dtype=torch.long)
        seen = 0
        gen = generator(seed * 7_919 + epoch + 1, dev)
        for x, y, _ in loader:
            if trainer.steps_done >= total_steps:
                break
            loss, logits, labels = trainer.step(x, y, epoch, gen)
            hard = labels.argmax(1) if labels.ndim == 2 else labels
            loss_sum += loss * len(x)
            correct += (logits.argmax(1) == hard).sum()
            seen += len(x)
        row = {"epoch": epoch, "step": trainer.steps_done, "lr": trainer.optimizer.param_groups[0]["lr"],
               "train_loss": loss_sum.item() / seen, "train_acc": 100.0 * correct.item() / seen}
        row.update(trainer.defense.on_epoch_end(trainer, epoch))
        for prefix, eval_loader in eval_loaders.items():
            result = evaluate(trainer.model, eval_loader)
            row[f"{prefix}_acc"], row[f"{prefix}_loss"] = result["acc"], result["loss"]
        if select_best and row["val_acc"] > best["acc"]:
            best = {"acc": row["val_acc"], "epoch": epoch,
                    "state": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}}
        row["epoch_s"] = time.perf_counter() - started
        rows.append(row)
        bar.set_postfix({k: round(row[k], 1) for k in ("train_acc", "test_acc") if k in row})
        if checkpoint is not None:
            atomic_torch_save({"config": config, "trainer": trainer.state_dict(), "history": rows, "epoch": epoch,
                               "best": best}, checkpoint)
        if trainer.defense.stop(rows):
            break
    if select_best:
        trainer.model.load_state_dict(best["state"])
    return TrainResult(model=trainer.model, history=pd.DataFrame(rows),
                       best_epoch=best["epoch"] if select_best else None)
