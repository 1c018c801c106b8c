"""The trainer: SGD on a device-resident dataset, per-epoch clean evaluation, checkpoint + resume.

Training-time defenses attach in exactly one place, the per-batch ``hook``: a callable
``hook(x, y, ctx) -> (x, y)`` that sees every augmented float batch before the forward pass
(``ctx`` is a :class:`StepContext` with the model, the optimizer, the epoch, the step and the
epoch's generator). Soft labels (N, K) returned by a hook are accepted by the loss.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import AUGMENTS, DeviceLoader, ImageDataset
from .runtime import atomic_torch_save, check_choice, check_float, check_int, generator
from .runtime import device as pick_device

SCHEDULES = ("multistep", "cosine", "onecycle", "constant")


@dataclass
class StepContext:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    epoch: int
    step: int
    generator: torch.Generator


Hook = Callable[[torch.Tensor, torch.Tensor, StepContext], tuple[torch.Tensor, torch.Tensor]]


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


def _autocast(dev: torch.device):
    if dev.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: ImageDataset | DeviceLoader, batch_size: int = 1000,
             device: str | torch.device = "auto") -> dict:
    """Accuracy (%) and mean cross-entropy of ``model`` on ``data``, no augmentation.

    ``data`` is a dataset, or an unshuffled :class:`DeviceLoader` already on the device (so
    repeated evaluations do not copy the data again).
    """
    if isinstance(data, ImageDataset):
        dev = pick_device(device) if isinstance(device, str) else device
        data = DeviceLoader(data, batch_size, dev, shuffle=False)
    dev = data.device
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    for x, y, _ in data:
        with _autocast(dev):
            logits = model(x)
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


def train(model: torch.nn.Module, train_set: ImageDataset, test_set: ImageDataset | None = None, *,
          epochs: int | None = None, iterations: int | None = None, batch_size: int = 128,
          lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 5e-4, nesterov: bool = False,
          schedule: str = "cosine", milestones_iter: tuple[int, ...] | None = None, lr_decay: float = 0.1,
          augment: str = "crop_flip", hook: Hook | None = None, val_set: ImageDataset | None = None,
          select_best: bool = False, checkpoint: str | os.PathLike | None = None, seed: int = 0,
          device: str = "auto", compile: bool = False, progress: bool = True) -> TrainResult:
    """Train ``model`` with SGD on ``train_set``; evaluate on clean ``test_set`` every epoch.

    Give the budget as ``epochs`` or ``iterations`` (SGD steps), not both. ``milestones_iter``
    defaults to every 40 % of the iterations (REM App. A.4: 16k of 40k). With ``select_best``,
    the weights of the epoch with the best ``val_set`` accuracy are returned (thesis App. A.1).
    With ``checkpoint``, state is saved atomically after every epoch and a rerun with the same
    arguments resumes from it, giving the same history as an uninterrupted run.
    """
    if (epochs is None) == (iterations is None):
        raise ValueError(f"give exactly one of epochs or iterations, got epochs={epochs}, iterations={iterations}")
    if epochs is not None:
        check_int("epochs", epochs, low=1)
    else:
        check_int("iterations", iterations, low=1)
    check_int("batch_size", batch_size, low=1, high=len(train_set))
    check_float("lr", lr, 0.0, 10.0, low_open=True)
    check_float("momentum", momentum, 0.0, 1.0)
    check_float("weight_decay", weight_decay, 0.0, 1.0)
    check_choice("schedule", schedule, SCHEDULES)
    check_choice("augment", augment, AUGMENTS)
    check_int("seed", seed, low=0)
    if select_best and val_set is None:
        raise ValueError("select_best=True needs a val_set to select on")

    dev = pick_device(device)
    loader = DeviceLoader(train_set, batch_size, dev, shuffle=True, augment=augment, seed=seed)
    # Moved to the device once, evaluated every epoch.
    eval_loaders = {prefix: DeviceLoader(dataset, 1000, dev, shuffle=False)
                    for prefix, dataset in (("test", test_set), ("val", val_set)) if dataset is not None}
    steps_per_epoch = len(loader)
    total_steps = iterations if iterations is not None else epochs * steps_per_epoch
    num_epochs = math.ceil(total_steps / steps_per_epoch)
    milestones = tuple(milestones_iter) if milestones_iter else (int(0.4 * total_steps), int(0.8 * total_steps))

    # channels_last is faster on CPU (oneDNN) as well as on CUDA tensor cores.
    model = model.to(dev, memory_format=torch.channels_last)
    step_model = torch.compile(model) if compile else model
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay,
                                nesterov=nesterov)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_multiplier(
        schedule, s, total_steps, steps_per_epoch, num_epochs, milestones, lr_decay))

    config = {"epochs": epochs, "iterations": iterations, "batch_size": batch_size, "lr": lr,
              "momentum": momentum, "weight_decay": weight_decay, "nesterov": nesterov, "schedule": schedule,
              "milestones": milestones, "lr_decay": lr_decay, "augment": augment, "seed": seed,
              "train": train_set.fingerprint(), "select_best": select_best}
    rows, start_epoch, best = [], 0, {"acc": -1.0, "epoch": None, "state": None}
    if checkpoint is not None and Path(checkpoint).is_file():
        state = torch.load(checkpoint, map_location=dev, weights_only=False)
        if state["config"] != config:
            raise ValueError(f"checkpoint {checkpoint} was written by a run with other arguments; "
                             "delete it or pass another checkpoint path")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        rows, start_epoch, best = state["history"], state["epoch"] + 1, state["best"]

    step = start_epoch * steps_per_epoch
    bar = tqdm(range(start_epoch, num_epochs), desc="train", disable=not progress, leave=False)
    for epoch in bar:
        started = time.perf_counter()
        model.train()
        loader.set_epoch(epoch)
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev, dtype=torch.long)
        seen = 0
        hook_gen = generator(seed * 7_919 + epoch + 1, dev)
        for x, y, _ in loader:
            if step >= total_steps:
                break
            if hook is not None:
                x, y = hook(x, y, StepContext(model, optimizer, epoch, step, hook_gen))
            x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(dev):
                logits = step_model(x)
            loss = F.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            hard = y.argmax(1) if y.ndim == 2 else y
            loss_sum += loss.detach() * len(x)
            correct += (logits.argmax(1) == hard).sum()
            seen += len(x)
            step += 1
        row = {"epoch": epoch, "step": step, "lr": optimizer.param_groups[0]["lr"],
               "train_loss": loss_sum.item() / seen, "train_acc": 100.0 * correct.item() / seen}
        for prefix, eval_loader in eval_loaders.items():
            result = evaluate(model, eval_loader)
            row[f"{prefix}_acc"], row[f"{prefix}_loss"] = result["acc"], result["loss"]
        if select_best and row["val_acc"] > best["acc"]:
            best = {"acc": row["val_acc"], "epoch": epoch,
                    "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
        row["epoch_s"] = time.perf_counter() - started
        rows.append(row)
        bar.set_postfix({k: round(row[k], 1) for k in ("train_acc", "test_acc") if k in row})
        if checkpoint is not None:
            atomic_torch_save({"config": config, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "scheduler": scheduler.state_dict(), "history": rows, "epoch": epoch,
                               "best": best}, checkpoint)
    if select_best:
        model.load_state_dict(best["state"])
    return TrainResult(model=model, history=pd.DataFrame(rows), best_epoch=best["epoch"] if select_best else None)

