"""Progressive staged training: ST, ST-CG and ST-Full (Dang et al. 2023, Sec. 3.2, Alg. 1, eqs. 6-7).

The paper's observation: a model trained on unlearnable data first learns real features (the
"golden window"), then its shallow layers lock onto the shortcut. Staged training watches the
Activation Cluster Measurement (:mod:`uexlib.acm`, eq. 5) of the model on a small per-class
subset ``D^s`` of its training set after every epoch. When it exceeds ``gamma`` (and fewer than
``1/beta - 1`` rollbacks happened), the epoch is undone and the learning rates of the shallow
layers are cut by eq. 7,

    alpha_i = 1 - 1 / (1 + exp(i / (beta * tau) - l)),     eta_i = alpha_i * eta_hat_i   (eq. 6)

for layer ``i`` of ``l`` (1 = the input side) and ``tau`` rollbacks so far: with ``beta = 1/4``
the first quarter of the layers stops learning after one rollback, the first half after two and
three quarters after three. An epoch without the trigger saves the model as the new rollback
point and keeps the factors (all ones before the first rollback).

* ``st``: the above with the trainer's augmentation and learning rate;
* ``st-cg``: with the CG augmentation (color jitter p 0.8, grayscale p 0.2) on every batch and
  twice the learning rate (the paper's 0.2 against NT's 0.1, App. A.2);
* ``st-full``: ST-CG for the first part of the budget, then fine-tuning of every layer with CG at
  three times the learning rate (the paper's 0.3), the schedule restarting for the fine-tuning.

Choices where the paper is silent, stated here:

* "Layers" are the modules that own weights (convolutions and linear layers), in the order the
  model registers them; a normalization layer's affine parameters join the layer before it.
* A rollback restores the model (weights and batch-norm statistics) *and* the optimizer's
  momentum from the saved epoch: the undone epoch leaves nothing behind. The learning-rate
  schedule still advances (Alg. 1 counts the undone epoch).
* ``D^s`` is drawn from the training set the defense is given (the paper: "a subset of the
  training dataset"), ``acm_per_class`` images per class (100 for CIFAR-10; 50 for CIFAR-100),
  seeded, and stays in the training set. ACM is measured at the penultimate activation.
* ST-Full's fine-tuning length is not given; by default it takes the second half of the epochs,
  so ST-Full costs what natural training costs. Its fine-tuning does not roll back.
* ACM has units of 1 / activation distance, so ``gamma = 2.6e-4`` (the paper's, for ResNet-18
  and its peers) is not transferable to other architectures without the sensitivity check of the
  paper's Fig. 9; the history records ACM so the threshold can be read off a natural run.
"""
from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..acm import gradient_magnitude, model_acm
from ..color import color_gray
from ..data import subset_per_class
from ..registry import with_defaults
from ..runtime import check_choice, check_float, check_int
from . import DEFENSES
from .base import Defense, StepContext

if TYPE_CHECKING:
    from ..data import ImageDataset
    from ..train import Trainer

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)


def _layer_modules(model: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """Weight-owning modules in registration order, each with the normalization modules after it."""
    units: list[tuple[str, list[nn.Module]]] = []
    for name, module in model.named_modules():
        if not any(True for _ in module.parameters(recurse=False)):
            continue
        if isinstance(module, _NORMS) and units:
            units[-1][1].append(module)
        else:
            units.append((name, [module]))
    return units


def layer_units(model: nn.Module) -> list[tuple[str, list[nn.Parameter]]]:
    """The model's layers for eq. 7: ``(name, parameters)`` of each weight-owning module, input side
    first; normalization parameters join the preceding layer. Every parameter is in one unit."""
    units = [(name, [p for module in modules for p in module.parameters(recurse=False)])
             for name, modules in _layer_modules(model)]
    if sum(len(params) for _, params in units) != len(list(model.parameters())):
        raise ValueError(f"{type(model).__name__} shares parameters between modules; staged training needs "
                         "each parameter in one layer")
    return units


def transplant_layers(source: nn.Module, target: nn.Module, which: str, count: int) -> list[str]:
    """ST Insight 2 (Sec. 3.1, Fig. 2): copy the first (``which="shallow"``) or last (``"deep"``)
    ``count`` layers of ``source`` into ``target`` (the same architecture) and freeze their
    parameters; returns the layers' names. Their batch-norm statistics still follow the data."""
    check_choice("which", which, ("shallow", "deep"))
    src, dst = _layer_modules(source), _layer_modules(target)
    if [name for name, _ in src] != [name for name, _ in dst]:
        raise ValueError("source and target must have the same architecture")
    check_int("count", count, low=1, high=len(dst) - 1)
    chosen = range(count) if which == "shallow" else range(len(dst) - count, len(dst))
    for index in chosen:
        for from_module, to_module in zip(src[index][1], dst[index][1]):
            to_module.load_state_dict(from_module.state_dict())
            for param in to_module.parameters(recurse=False):
                param.requires_grad_(False)
    return [dst[index][0] for index in chosen]


def alpha(i: int, layers: int, beta: float, tau: int) -> float:
    """Eq. 7: the learning-rate factor of layer ``i`` (1-based) of ``layers`` after ``tau`` rollbacks."""
    if tau == 0:
        return 1.0                                       # i / (beta * 0) = +inf: natural training
    exponent = i / (beta * tau) - layers
    return 1.0 - 1.0 / (1.0 + math.exp(min(exponent, 700.0)))


@DEFENSES.register("st", "progressive staged training: ACM-triggered rollbacks, shallow layers slowed (ST Alg. 1)")
class StagedTraining(Defense):
    """Progressive staged training (Dang et al. 2023, Alg. 1).

    Args:
        gamma: ACM threshold above which the model is taken to overfit (2.6e-4, ST Sec. 4.1).
        beta: eq. 7's hyperparameter; at most ``1/beta - 1`` rollbacks (1/4, so 3).
        acm_per_class: images per class in ``D^s`` (100: CIFAR-10's 1,000; use 50 for CIFAR-100).
        acm_layer: module whose output ACM measures; ``None``: the penultimate activation.
        lr_scale: the learning rate of the staged part as a multiple of the trainer's (1.0).
        cg: CG augmentation (color jitter p 0.8 then grayscale p 0.2) on every batch.
        finetune_fraction: share of the epochs given to fine-tuning every layer after the
            staged part (0: none; ST-Full 0.5), with its own run of the trainer's schedule.
        finetune_lr_scale: the fine-tuning learning rate as a multiple of the trainer's (3.0).
    """

    def __init__(self, gamma: float = 2.6e-4, beta: float = 0.25, acm_per_class: int = 100,
                 acm_layer: str | None = None, lr_scale: float = 1.0, cg: bool = False,
                 finetune_fraction: float = 0.0, finetune_lr_scale: float = 3.0):
        check_float("gamma", gamma, 0.0, math.inf)
        check_float("beta", beta, 0.0, 1.0, low_open=True)
        check_int("acm_per_class", acm_per_class, low=2)
        if acm_layer is not None and not isinstance(acm_layer, str):
            raise ValueError(f"acm_layer must be a module name or None, got {acm_layer!r}")
        check_float("lr_scale", lr_scale, 0.0, 100.0, low_open=True)
        if not isinstance(cg, bool):
            raise ValueError(f"cg must be True or False, got {cg!r}")
        check_float("finetune_fraction", finetune_fraction, 0.0, 1.0, hint="0 for no fine-tuning")
        if finetune_fraction == 1.0:
            raise ValueError("finetune_fraction must be below 1: the staged part needs at least one epoch")
        check_float("finetune_lr_scale", finetune_lr_scale, 0.0, 100.0, low_open=True)
        self.params = {"gamma": gamma, "beta": beta, "acm_per_class": acm_per_class, "acm_layer": acm_layer,
                       "lr_scale": lr_scale, "cg": cg, "finetune_fraction": finetune_fraction,
                       "finetune_lr_scale": finetune_lr_scale}
        self.layer_names: list[str] = []
        self.tau = 0
        self.alphas: tuple[float, ...] = ()             # H^tmp: the factors of the current epoch
        self.staged_epochs = 0
        self._saved: dict | None = None                  # theta^tmp: model and optimizer of the last kept epoch
        self._acm_images = self._acm_labels = None

    def param_groups(self, model: nn.Module) -> list[dict]:
        units = layer_units(model)
        self.layer_names = [name for name, _ in units]
        self.alphas = (1.0,) * len(units)
        return [{"params": params, "lr_factor": self.params["lr_scale"]} for _, params in units]

    def start(self, trainer: "Trainer", train_set: "ImageDataset", seed: int) -> None:
        layer = self.params["acm_layer"]
        if layer is not None and layer not in dict(trainer.model.named_modules()):
            raise ValueError(f"acm_layer {layer!r} is not a module of {type(trainer.model).__name__}; "
                             f"modules: {', '.join(name for name, _ in trainer.model.named_modules() if name)}")
        smallest = int(torch.bincount(train_set.labels).min())
        if self.params["acm_per_class"] > smallest:
            raise ValueError(f"acm_per_class={self.params['acm_per_class']} exceeds the {smallest} training images "
                             "of the smallest class; lower it")
        subset = subset_per_class(train_set, self.params["acm_per_class"], seed)
        self._acm_images = subset.images.to(trainer.device).float().div_(255)
        self._acm_labels = subset.labels.to(trainer.device)
        tune = math.floor(self.params["finetune_fraction"] * trainer.epochs)
        self.staged_epochs = trainer.epochs - tune
        if self.params["finetune_fraction"] > 0 and (tune < 1 or self.staged_epochs < 1):
            raise ValueError(f"finetune_fraction={self.params['finetune_fraction']} of {trainer.epochs} epochs "
                             "leaves no epoch for one of the two phases; train longer or change it")
        self._save(trainer)

    def transform(self, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        return (color_gray(x, ctx.generator), y) if self.params["cg"] else (x, y)

    def lr_multiplier(self, trainer: "Trainer") -> float | None:
        if self.staged_epochs >= trainer.epochs:
            return None
        boundary = self.staged_epochs * trainer.steps_per_epoch
        if trainer.steps_done < boundary:
            return trainer.schedule_factor(trainer.steps_done, boundary)
        return trainer.schedule_factor(trainer.steps_done - boundary, trainer.total_steps - boundary)

    def _save(self, trainer: "Trainer") -> None:
        self._saved = {"model": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
                       "optimizer": copy.deepcopy(trainer.optimizer.state_dict())}

    def _set_factors(self, trainer: "Trainer", factors: tuple[float, ...], scale: float) -> None:
        for group, factor in zip(trainer.optimizer.param_groups, factors):
            group["lr_factor"] = scale * factor

    def on_epoch_end(self, trainer: "Trainer", epoch: int) -> dict:
        """Alg. 1's end of epoch: ACM on ``D^s``, then roll back and recompute eq. 7, or keep and save.

        History columns: ``acm`` (measured before any rollback), ``gmv`` (the first layer's mean
        |gradient| on ``D^s``), ``tau``, ``rollback`` (this epoch was undone), ``phase``
        (``staged`` or ``finetune``) and ``alpha`` (H^e: the factors of eq. 7 the next epoch uses).
        """
        value = model_acm(trainer.model, self._acm_images, self._acm_labels, self.params["acm_layer"])
        gmv = gradient_magnitude(trainer.model, self._acm_images, self._acm_labels)
        rollback = False
        phase = "staged" if epoch < self.staged_epochs else "finetune"
        if phase == "staged":
            if value > self.params["gamma"] and self.tau < 1 / self.params["beta"] - 1:
                self.tau += 1
                trainer.model.load_state_dict(self._saved["model"])
                trainer.optimizer.load_state_dict(self._saved["optimizer"])
                layers = len(self.layer_names)
                self.alphas = tuple(alpha(i, layers, self.params["beta"], self.tau) for i in range(1, layers + 1))
                rollback = True
            else:
                self._save(trainer)
        if self.staged_epochs < trainer.epochs and epoch + 1 >= self.staged_epochs:   # next: fine-tuning
            self.alphas = (1.0,) * len(self.layer_names)
            self._set_factors(trainer, self.alphas, self.params["finetune_lr_scale"])
        else:
            self._set_factors(trainer, self.alphas, self.params["lr_scale"])
        return {"acm": value, "gmv": gmv, "tau": self.tau, "rollback": rollback, "phase": phase,
                "alpha": self.alphas}

    def state_dict(self) -> dict:
        return {"tau": self.tau, "alphas": self.alphas, "saved": self._saved}

    def load_state_dict(self, state: dict) -> None:
        self.tau, self.alphas, self._saved = state["tau"], tuple(state["alphas"]), state["saved"]


@DEFENSES.register("st-cg", "staged training with CG augmentation at twice the learning rate (ST Table 3)")
@with_defaults(StagedTraining, cg=True, lr_scale=2.0)
class StagedTrainingCG(StagedTraining):
    """ST-CG (Dang et al. 2023, Table 3 and App. A.2): ST with CG on every batch, learning rate 0.2
    where natural training uses 0.1 (``lr_scale=2``)."""


@DEFENSES.register("st-full", "ST-CG, then fine-tuning every layer with CG at 3x the learning rate (ST Table 3)")
@with_defaults(StagedTraining, cg=True, lr_scale=2.0, finetune_fraction=0.5)
class StagedTrainingFull(StagedTraining):
    """ST-Full (Dang et al. 2023, Sec. 3.2 "ST Training Pipeline", Table 3): ST-CG for the first half of
    the epochs, then every layer fine-tuned with CG at learning rate 0.3 (``finetune_lr_scale=3``),
    the schedule restarting."""
