"""Error-minimizing noise (EM), sample-wise and class-wise.

Huang et al., *Unlearnable Examples: Making Personal Data Unexploitable*, ICLR 2021, eq. 2: the
noise minimizes the surrogate's training loss, ``min_theta E[min_delta CE(f(x + delta), y)]``,
solved by alternating SGD on the surrogate with PGD on the noise. The loop follows the thesis of
Berns (2021), App. A.2 and Alg. 1; settings from the issue brief and REM (Fu et al., ICLR 2022),
App. A.3.2: eps = 8/255, step eps/10 x 20 steps, 10 SGD steps between noise updates, stop once
the error on the poisoned training data is below 1 %.
"""
from __future__ import annotations

import itertools
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import models
from ..artifacts import Poison, quantize
from ..attacks import pgd_linf, project_linf
from ..data import AUGMENTS, DeviceLoader, ImageDataset, augment
from ..runtime import VERSION, atomic_torch_save, check_choice, check_float, check_int, generator, git_commit
from ..runtime import device as pick_device
from . import register

MODES = ("samplewise", "classwise")


def check_eps(eps) -> None:
    hint = f" (did you mean {eps:g}/255?)" if isinstance(eps, (int, float)) and 1 < eps <= 255 else ""
    check_float("eps", eps, 0.0, 1.0, low_open=True, hint=hint)


@register("em")
class ErrorMinimizing:
    """Error-minimizing noise (Huang et al., ICLR 2021, eq. 2; Berns 2021, Alg. 1).

    Threat model: the data owner perturbs every training image within an L-inf ball of radius
    ``eps`` (pixel scale [0, 1]); labels are unchanged.

    Args:
        eps: L-inf radius on the [0, 1] scale (8/255).
        mode: ``"samplewise"`` (one noise per image) or ``"classwise"`` (one per class,
            accumulated over the images of the class, Alg. 1 lines 19-23).
        steps: PGD steps per noise update (20); step_size: PGD step (default 2 eps / steps, i.e.
            eps/10 for 20 steps as in the thesis, eps/5 for 10 steps as in REM Table 5).
        train_steps: surrogate SGD steps between noise updates (10).
        stop_error: stop once the surrogate's error on the poisoned data is below this (0.01).
        max_rounds: at most this many (train, noise-update) rounds, a budget for CPU profiles.
        surrogate, surrogate_width: the ``uexlib.models`` name and width of the surrogate.
        batch_size, lr, momentum, weight_decay: surrogate SGD (128, 0.1, 0.9, 5e-4).
        augment: augmentation of the surrogate's training batches (crop + flip, as the thesis).
        checkpoint: optional path; state is saved after every round and a rerun resumes from it.

    Example:
        >>> poison = ue.generators.create("em", eps=8/255, mode="classwise").generate(train_set)
    """

    def __init__(self, eps: float = 8 / 255, mode: str = "samplewise", steps: int = 20,
                 step_size: float | None = None, train_steps: int = 10, stop_error: float = 0.01,
                 max_rounds: int = 100, surrogate: str = "resnet18", surrogate_width: float = 1.0,
                 batch_size: int = 128, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 5e-4,
                 augment: str = "crop_flip", seed: int = 0, device: str = "auto",
                 checkpoint: str | None = None, progress: bool = True):
        check_eps(eps)
        check_choice("mode", mode, MODES)
        check_int("steps", steps, low=1)
        # 2 eps / steps crosses the ball's diameter: eps/10 x 20 (thesis A.2), eps/5 x 10 (REM Table 5).
        step_size = 2 * eps / steps if step_size is None else step_size
        check_float("step_size", step_size, 0.0, eps, low_open=True)
        check_int("train_steps", train_steps, low=0)
        check_float("stop_error", stop_error, 0.0, 1.0)
        check_int("max_rounds", max_rounds, low=1)
        check_int("batch_size", batch_size, low=1)
        check_float("lr", lr, 0.0, 10.0, low_open=True)
        check_choice("augment", augment, AUGMENTS)
        check_int("seed", seed, low=0)
        check_choice("surrogate", surrogate, models.list_models())
        self.params = {"eps": eps, "mode": mode, "steps": steps, "step_size": step_size,
                       "train_steps": train_steps, "stop_error": stop_error, "max_rounds": max_rounds,
                       "surrogate": surrogate, "surrogate_width": surrogate_width, "batch_size": batch_size,
                       "lr": lr, "momentum": momentum, "weight_decay": weight_decay, "augment": augment,
                       "seed": seed}
        self.device, self.checkpoint, self.progress = pick_device(device), checkpoint, progress

    def generate(self, dataset: ImageDataset) -> Poison:
        """Return a new :class:`Poison` for ``dataset``; ``dataset`` is not modified."""
        p, dev = self.params, self.device
        started = time.perf_counter()
        torch.manual_seed(p["seed"])
        model = models.create(p["surrogate"], dataset.num_classes, dataset.shape[0], p["surrogate_width"])
        model = model.to(dev, memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=p["lr"], momentum=p["momentum"],
                                    weight_decay=p["weight_decay"])
        gen = generator(p["seed"], dev)
        count = dataset.num_classes if p["mode"] == "classwise" else len(dataset)
        # Alg. 1 line 1: delta ~ Uniform(-eps, eps).
        delta = (torch.rand((count, *dataset.shape), device=dev, generator=gen) * 2 - 1) * p["eps"]
        # The budget (max_rounds, stop_error) may grow between a run and its resumption.
        key = {"params": {k: v for k, v in p.items() if k not in ("max_rounds", "stop_error")},
               "dataset": dataset.fingerprint()}
        start_round, history = 0, []
        if self.checkpoint and Path(self.checkpoint).is_file():
            state = torch.load(self.checkpoint, map_location=dev, weights_only=False)
            if state["key"] != key:
                raise ValueError(f"checkpoint {self.checkpoint} belongs to another EM run; delete it or pass another path")
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            delta, start_round, history = state["delta"], state["round"] + 1, state["history"]

        train_loader = DeviceLoader(dataset, p["batch_size"], dev, shuffle=True, seed=p["seed"])
        ordered = DeviceLoader(dataset, p["batch_size"], dev, shuffle=False)
        batches = _endless(train_loader, start_round * p["train_steps"])
        rounds = tqdm(range(start_round, p["max_rounds"]), desc=f"EM {p['mode']}", disable=not self.progress,
                      leave=False)
        error = history[-1]["train_error"] if history else 1.0
        for rnd in rounds:
            if error < p["stop_error"]:
                break
            model.train()
            gen = generator(p["seed"] * 10_007 + rnd + 1, dev)
            for x, y, rows in itertools.islice(batches, p["train_steps"]):
                poisoned = augment(project_linf(x, self._noise(delta, rows, y), p["eps"]) + x, p["augment"], gen)
                loss = F.cross_entropy(model(poisoned), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            # The noise is fitted to the surrogate as it trains: batch-statistics BN, as in its SGD
            # steps (a few steps leave eval-mode running statistics far from the data's).
            delta = self._update_noise(model, ordered, delta)
            error = 1.0 - self._accuracy(model, ordered, delta)
            history.append({"round": rnd, "train_error": error})
            rounds.set_postfix(train_error=f"{error:.3f}")
            if self.checkpoint:
                atomic_torch_save({"key": key, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                   "delta": delta, "round": rnd, "history": history}, self.checkpoint)

        delta = delta.cpu()
        per_sample = delta[dataset.labels] if p["mode"] == "classwise" else delta
        images = quantize(dataset.images, per_sample)
        metadata = {"method": f"em-{p['mode']}", "params": p, "norm": "linf", "radius": p["eps"],
                    "seed": p["seed"], "surrogate": f"{p['surrogate']} (width {p['surrogate_width']})",
                    "dataset": {"name": dataset.name, "split": dataset.split, "source": dataset.source,
                                "fingerprint": dataset.fingerprint(), "size": len(dataset)},
                    "rounds": len(history), "final_train_error": error, "history": history,
                    "wall_s": time.perf_counter() - started, "uexlib_version": VERSION,
                    "git_commit": git_commit(), "device": str(dev)}
        return Poison(images=images, delta=delta, labels=dataset.labels.clone(), dataset=dataset, metadata=metadata)

    def _noise(self, delta: torch.Tensor, rows: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return delta[labels] if self.params["mode"] == "classwise" else delta[rows]

    def _update_noise(self, model, ordered: DeviceLoader, delta: torch.Tensor) -> torch.Tensor:
        """One pass of PGD over the data (Alg. 1 lines 9-25); returns the new noise."""
        p = self.params
        delta = delta.clone()
        for x, y, rows in ordered:
            if p["mode"] == "samplewise":
                delta[rows] = pgd_linf(model, x, y, delta[rows], p["eps"], p["step_size"], p["steps"], minimize=True)
            else:
                noisy = x + project_linf(x, delta[y], p["eps"])
                eta = pgd_linf(model, noisy, y, torch.zeros_like(x), p["eps"], p["step_size"], p["steps"],
                               minimize=True)
                # Alg. 1 line 22, batched: add each image's update to its class noise, then clip.
                delta.index_add_(0, y, eta).clamp_(-p["eps"], p["eps"])
        return delta

    @torch.no_grad()
    def _accuracy(self, model, ordered: DeviceLoader, delta: torch.Tensor) -> float:
        """The surrogate's accuracy on the poisoned data, for the stopping rule (Alg. 1 line 26)."""
        correct = torch.zeros((), device=ordered.device, dtype=torch.long)
        for x, y, rows in ordered:
            noise = project_linf(x, self._noise(delta, rows, y), self.params["eps"])
            correct += (model(x + noise).argmax(1) == y).sum()
        return correct.item() / len(ordered.labels)


def _endless(loader: DeviceLoader, skip_batches: int):
    """Batches of successive epochs, starting after ``skip_batches`` (so a resumed run sees the same)."""
    first_epoch, skip = divmod(skip_batches, len(loader))
    for epoch in itertools.count(first_epoch):
        loader.set_epoch(epoch)
        yield from itertools.islice(loader, skip if epoch == first_epoch else 0, None)
