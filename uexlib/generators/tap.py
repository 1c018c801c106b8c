"""Targeted adversarial poisoning, TAP (Fowl, Goldblum, Chiang, Geiping, Czaja and Goldstein,
"Adversarial examples make strong poisons", NeurIPS 2021), as the REM paper runs it (App. A.3.2,
Table 5).

A model is trained on the clean data; then every training image is moved, within an L-inf ball of
radius ``eps``, towards being classified as another class, ``(y + shift) mod K``, by targeted PGD
whose gradient goes through random crops and flips (differentiable augmentation, so the
perturbation survives the trainer's). A model trained on the result learns features that point to
the wrong classes.

Settings are REM's (Table 5 and its public scripts): 250 steps of rho/125 (the default step here
is ``2 * eps / steps``, the same at 250 steps), a uniform random start, one augmentation sample
per step, the crafting model a ResNet-18 trained 40,000 iterations (batch 128, SGD 0.1, 0.9,
5e-4, x0.1 at 16,000 and 32,000). The TAP authors' own code differs: steps of eps/20 with 8
restarts keeping the lowest target loss, a Gaussian start, a bilinear translation instead of the
crop, a crafting model trained 40 epochs.
"""
from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from ..artifacts import Poison, check_budget
from ..attacks import pgd
from ..data import AUGMENTS, DeviceLoader, ImageDataset, augment
from ..runtime import check_choice, check_eps, check_float, check_int, generator
from ..runtime import device as pick_device
from . import register
from .surrogate import Checkpoint, check_surrogate, surrogate_trainer


@register("tap", "targeted adversarial poisoning: targeted PGD against a clean-trained model (Fowl et al. 2021)")
class TargetedAdversarialPoisoning:
    """TAP: targeted PGD towards class ``(y + shift) mod K`` against a model trained on clean data.

    Args:
        eps: L-inf radius on the [0, 1] scale (8/255).
        steps, step_size: PGD steps (250) and step (default ``2 * eps / steps``: REM's rho/125).
        eot_samples, transform: augmentations averaged per step (1) and their kind (``"crop_flip"``).
        shift: the target is ``(y + shift) mod K`` (1).
        surrogate, surrogate_width: the crafting model (ResNet-18).
        train_iterations, milestones_iter, batch_size, lr, momentum, weight_decay: its training on
            clean data with the standard augmentation (40,000; 16,000 and 32,000; 128; 0.1; 0.9; 5e-4).
        pgd_batch_size: images attacked at once (default ``batch_size``).
        seed: seeds the crafting model, its batches, the random starts and the augmentations.
        checkpoint, checkpoint_every: optional path; the state is saved every ``checkpoint_every``
            training iterations and attacked batches, and a rerun with the same settings resumes.
    """

    def __init__(self, eps: float = 8 / 255, steps: int = 250, step_size: float | None = None,
                 eot_samples: int = 1, transform: str = "crop_flip", shift: int = 1, surrogate: str = "resnet18",
                 surrogate_width: float = 1.0, train_iterations: int = 40_000,
                 milestones_iter: tuple[int, ...] = (16_000, 32_000), batch_size: int = 128,
                 pgd_batch_size: int | None = None, lr: float = 0.1, momentum: float = 0.9,
                 weight_decay: float = 5e-4, seed: int = 0, device: str = "auto", checkpoint: str | None = None,
                 checkpoint_every: int = 500, progress: bool = True):
        check_eps(eps)
        check_int("steps", steps, low=1)
        step_size = 2 * eps / steps if step_size is None else step_size
        check_float("step_size", step_size, 0.0, eps, low_open=True)
        check_int("eot_samples", eot_samples, low=1)
        check_choice("transform", transform, AUGMENTS)
        check_int("shift", shift, low=1)
        check_int("train_iterations", train_iterations, low=1)
        pgd_batch_size = check_surrogate(surrogate=surrogate, bn_mode="eval", batch_size=batch_size,
                                         pgd_batch_size=pgd_batch_size, lr=lr, seed=seed,
                                         checkpoint_every=checkpoint_every)
        self.params = {"eps": eps, "steps": steps, "step_size": step_size, "eot_samples": eot_samples,
                       "transform": transform, "shift": shift, "surrogate": surrogate,
                       "surrogate_width": surrogate_width, "train_iterations": train_iterations,
                       "milestones_iter": list(milestones_iter), "batch_size": batch_size,
                       "pgd_batch_size": pgd_batch_size, "lr": lr, "momentum": momentum,
                       "weight_decay": weight_decay, "seed": seed}
        self.device, self.progress = pick_device(device), progress
        self.checkpoint, self.checkpoint_every = Checkpoint(checkpoint, "tap"), checkpoint_every

    def generate(self, dataset: ImageDataset) -> Poison:
        p, dev = self.params, self.device
        if p["shift"] % dataset.num_classes == 0:
            raise ValueError(f"shift {p['shift']} maps every class of {dataset.num_classes} to itself")
        started = time.perf_counter()
        trainer = surrogate_trainer(p, dataset, dev, total_steps=p["train_iterations"], schedule="multistep")
        key = {"method": "tap", "params": p, "dataset": dataset.fingerprint()}
        state = self.checkpoint.load(trainer, key) or {"done": 0, "attacked": 0, "delta": None}
        self._train(trainer, dataset, state, key)
        delta = self._attack(trainer, dataset, state, key).cpu()
        check_budget(delta, "linf", p["eps"])
        metadata = {"method": "tap", "params": p, "norm": "linf", "radius": p["eps"], "seed": p["seed"],
                    "surrogate": f"{p['surrogate']} (width {p['surrogate_width']}), trained on clean data",
                    "wall_s": time.perf_counter() - started, "device": str(dev)}
        return Poison.from_perturbation(dataset, delta, metadata, classwise=False)

    def _train(self, trainer, dataset: ImageDataset, state: dict, key: dict) -> None:
        """The crafting model: ordinary training on the clean data with the standard augmentation."""
        p = self.params
        loader = DeviceLoader(dataset, p["batch_size"], trainer.device, shuffle=True, seed=p["seed"], drop_last=True)
        batches = loader.endless(state["done"])
        for it in tqdm(range(state["done"], p["train_iterations"]), desc="tap model", disable=not self.progress,
                       leave=False):
            x, y, _ = next(batches)
            gen = generator(p["seed"] * 1_000_003 + it + 1, trainer.device)
            trainer.step(augment(x, "crop_flip", gen), y)
            state["done"] = it + 1
            if state["done"] % self.checkpoint_every == 0 or state["done"] == p["train_iterations"]:
                self.checkpoint.save(trainer, state, key)

    def _attack(self, trainer, dataset: ImageDataset, state: dict, key: dict) -> torch.Tensor:
        """Targeted PGD with augmentation inside, every image in order."""
        p, dev = self.params, trainer.device
        model = trainer.model.eval()
        ordered = DeviceLoader(dataset, p["pgd_batch_size"], dev, shuffle=False)
        if state["delta"] is None:
            state["delta"] = torch.zeros((len(dataset), *dataset.shape), device=dev)

        def transform(batch: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            return augment(batch, p["transform"], g)

        bar = tqdm(total=len(ordered), initial=state["attacked"], desc="tap noise", disable=not self.progress,
                   leave=False)
        for b, (x, y, rows) in enumerate(ordered):
            if b < state["attacked"]:
                continue
            gen = generator(p["seed"] * 1_000_003 + p["train_iterations"] + b + 1, dev)
            target = (y + p["shift"]) % dataset.num_classes
            state["delta"][rows] = pgd(model, x, y, eps=p["eps"], steps=p["steps"], step_size=p["step_size"],
                                       target=target, random_start=True, eot=transform,
                                       eot_samples=p["eot_samples"], generator=gen)
            state["attacked"] = b + 1
            bar.update()
            if state["attacked"] % self.checkpoint_every == 0:
                self.checkpoint.save(trainer, state, key)
        bar.close()
        return state["delta"]
