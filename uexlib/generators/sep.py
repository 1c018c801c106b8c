"""Self-ensemble protection, SEP (Chen, Yuan, Cheng, Gong, Qin, Wang and Huang, "Self-ensemble
protection: training checkpoints are good data protectors", ICLR 2023).

One ordinary training run of the surrogate on the clean data leaves checkpoints; ``checkpoints``
of them, evenly spaced over the run, form an ensemble, and every training image is moved within
an L-inf ball of radius ``eps`` by PGD on the ensemble's average loss towards the class
``(y + shift) mod K``. Checkpoints from different stages of training have learned different
features, so the perturbation misleads more of what a new model could learn.

Settings follow the authors' public code (the paper's method section was not available here):
30 checkpoints, 30 steps of 1/255, the loss averaged over checkpoints (not their logits), no
augmentation or random start, target shift 5 (half of CIFAR-10's classes), a ResNet-18 trained 120
epochs (SGD 0.1, 0.9, 5e-4; x0.1 at epochs 75 and 90). Their code keeps a checkpoint only when test
accuracy improves and picks among those; here checkpoints are taken at evenly spaced iterations
of the run (no test set is involved). The feature-alignment (SEP-FA) and variance-reduction
(SEP-FA-VR) variants are not implemented.
"""
from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..artifacts import Poison, check_budget
from ..attacks import pgd
from ..data import DeviceLoader, ImageDataset, augment
from ..runtime import check_eps, check_float, check_int, generator
from ..runtime import device as pick_device
from . import register
from .surrogate import check_surrogate, surrogate_trainer


class _Ensemble(torch.nn.Module):
    """The checkpoints' logits stacked along the batch: (M * N, K) for a batch of N."""

    def __init__(self, members: list[torch.nn.Module]):
        super().__init__()
        self.members = torch.nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([member(x) for member in self.members])


@register("sep", "self-ensemble protection: PGD against checkpoints of one training run (Chen et al. 2023)")
class SelfEnsembleProtection:
    """SEP: targeted PGD on the average loss of ``checkpoints`` checkpoints of one ordinary training run.

    Args:
        eps: L-inf radius on the [0, 1] scale (8/255).
        steps, step_size: PGD steps and step (30 and 1/255).
        shift: the target class is ``(y + shift) mod K`` (5).
        checkpoints: how many evenly spaced checkpoints of the run form the ensemble (30).
        surrogate, surrogate_width: the trained model (ResNet-18).
        train_iterations, milestones_iter, batch_size, lr, momentum, weight_decay: its ordinary
            training (46,800 = 120 epochs of CIFAR-10 at batch 128; x0.1 at epochs 75 and 90;
            SGD 0.1, 0.9, 5e-4), with the standard augmentation.
        pgd_batch_size: images attacked at once (default ``batch_size``).
        seed: seeds the model and its batches.
    """

    def __init__(self, eps: float = 8 / 255, steps: int = 30, step_size: float = 1 / 255, shift: int = 5,
                 checkpoints: int = 30, surrogate: str = "resnet18", surrogate_width: float = 1.0,
                 train_iterations: int = 46_800, milestones_iter: tuple[int, ...] = (29_250, 35_100),
                 batch_size: int = 128, pgd_batch_size: int | None = None, lr: float = 0.1,
                 momentum: float = 0.9, weight_decay: float = 5e-4, seed: int = 0, device: str = "auto",
                 progress: bool = True):
        check_eps(eps)
        check_int("steps", steps, low=1)
        check_float("step_size", step_size, 0.0, eps, low_open=True)
        check_int("shift", shift, low=1)
        check_int("checkpoints", checkpoints, low=1)
        check_int("train_iterations", train_iterations, low=checkpoints)
        pgd_batch_size = check_surrogate(surrogate=surrogate, bn_mode="eval", batch_size=batch_size,
                                         pgd_batch_size=pgd_batch_size, lr=lr, seed=seed, checkpoint_every=1)
        self.params = {"eps": eps, "steps": steps, "step_size": step_size, "shift": shift,
                       "checkpoints": checkpoints, "surrogate": surrogate, "surrogate_width": surrogate_width,
                       "train_iterations": train_iterations, "milestones_iter": list(milestones_iter),
                       "batch_size": batch_size, "pgd_batch_size": pgd_batch_size, "lr": lr, "momentum": momentum,
                       "weight_decay": weight_decay, "seed": seed}
        self.device, self.progress = pick_device(device), progress

    def generate(self, dataset: ImageDataset) -> Poison:
        p, dev = self.params, self.device
        if p["shift"] % dataset.num_classes == 0:
            raise ValueError(f"shift {p['shift']} maps every class of {dataset.num_classes} to itself")
        started = time.perf_counter()
        members = self._checkpoints(dataset)
        ensemble = _Ensemble(members).eval()
        count = len(members)

        def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(logits, labels.repeat(count), reduction="sum") / count

        ordered = DeviceLoader(dataset, p["pgd_batch_size"], dev, shuffle=False)
        delta = torch.zeros((len(dataset), *dataset.shape), device=dev)
        for x, y, rows in tqdm(ordered, desc="sep noise", disable=not self.progress, leave=False):
            delta[rows] = pgd(ensemble, x, y, eps=p["eps"], steps=p["steps"], step_size=p["step_size"],
                              target=(y + p["shift"]) % dataset.num_classes, loss_fn=loss_fn)
        delta = delta.cpu()
        check_budget(delta, "linf", p["eps"])
        metadata = {"method": "sep", "params": p, "norm": "linf", "radius": p["eps"], "seed": p["seed"],
                    "surrogate": f"{p['surrogate']} (width {p['surrogate_width']}), {count} checkpoints",
                    "wall_s": time.perf_counter() - started, "device": str(dev)}
        return Poison.from_perturbation(dataset, delta, metadata, classwise=False)

    def _checkpoints(self, dataset: ImageDataset) -> list[torch.nn.Module]:
        """Copies of the model at ``checkpoints`` evenly spaced iterations of its ordinary training."""
        p = self.params
        trainer = surrogate_trainer(p, dataset, self.device, total_steps=p["train_iterations"], schedule="multistep")
        saves = {round((i + 1) * p["train_iterations"] / p["checkpoints"]) for i in range(p["checkpoints"])}
        loader = DeviceLoader(dataset, p["batch_size"], trainer.device, shuffle=True, seed=p["seed"], drop_last=True)
        batches = loader.endless()
        members = []
        for it in tqdm(range(p["train_iterations"]), desc="sep model", disable=not self.progress, leave=False):
            x, y, _ = next(batches)
            trainer.step(augment(x, "crop_flip", generator(p["seed"] * 1_000_003 + it + 1, trainer.device)), y)
            if it + 1 in saves:
                members.append(copy.deepcopy(trainer.model).eval())
        return members
