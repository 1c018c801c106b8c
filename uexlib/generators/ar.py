"""Autoregressive perturbations, AR (Sandoval-Segura, Singla, Fowl, Geiping, Goldblum, Jacobs and
Goldstein, "Autoregressive perturbations for data poisoning", NeurIPS 2022).

Each class owns an autoregressive (AR) process: every pixel of every channel is a fixed linear
combination of the 8 pixels before it in its 3x3 window (raster order), with the class's
coefficients. A model can detect the process with one convolution (the coefficients with -1 at the
pixel they predict give exactly zero on their own class's noise and a response on the others'),
so the noise is a simple, separable shortcut; no model is involved in making it.

* Coefficients: per class and channel, 8 draws of N(0, 1) (the 9th, the predicted pixel, is 0),
  divided by their sum. A candidate is kept if its trial noises stay finite and do not grow (L2 of
  the cropped raw noise at most ``max_raw_l2``) and every earlier class's filter responds to them
  by at least ``min_response`` (the sum of ReLU of the filter's convolution), so the classes'
  processes are told apart. These rules and values are the authors' public code's (their paper's
  method section was not available here); the code also hard-codes its CIFAR-10 coefficients,
  which this module draws afresh from ``seed``.
* Noise: a (C, H+4, W+4) field of N(0, 1) is run through the process in raster order, the first
  4 rows and columns (never predicted) are cropped, and the result is scaled to L2 ``eps`` (1.0).
  The process is the class's; the noise is drawn per image.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from ..artifacts import Poison, scale_to_budget
from ..data import ImageDataset
from ..runtime import check_float, check_int
from . import register

WINDOW = 3
CROP = 4


def ar_fields(coefficients: torch.Tensor, count: int, height: int, width: int,
              gen: torch.Generator) -> torch.Tensor:
    """``count`` raw AR noises (count, C, H, W): of one process ``coefficients`` (C, 3, 3), or
    of one process per noise, ``coefficients`` (count, C, 3, 3)."""
    weights = coefficients.double()
    weights = weights.unsqueeze(0) if weights.ndim == 3 else weights
    channels = weights.shape[1]
    field = torch.randn(count, channels, height + CROP, width + CROP, generator=gen, dtype=torch.float64)
    for i in range(height + CROP - WINDOW + 1):
        for j in range(width + CROP - WINDOW + 1):
            window = field[:, :, i:i + WINDOW, j:j + WINDOW]
            field[:, :, i + WINDOW - 1, j + WINDOW - 1] = (window * weights).sum(dim=(2, 3))
    return field[:, :, CROP:, CROP:]


def response(coefficients: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Per noise, the sum of ReLU of the process's detecting filter over the map (0 on its own noise)."""
    channels = coefficients.shape[0]
    detector = coefficients.double().clone()
    detector[:, -1, -1] = -1.0
    out = F.conv2d(noise.double(), detector.view(channels, 1, WINDOW, WINDOW), groups=channels)
    return F.relu(out).flatten(1).sum(1)


def draw_coefficients(channels: int, gen: torch.Generator) -> torch.Tensor:
    """(C, 3, 3): per channel 8 normal draws divided by their sum; the predicted pixel is 0."""
    raw = torch.randn(channels, WINDOW, WINDOW, generator=gen, dtype=torch.float64)
    raw[:, -1, -1] = 0.0
    return raw / raw.sum(dim=(1, 2), keepdim=True)


def select_processes(num_classes: int, channels: int, gen: torch.Generator, min_response: float,
                     max_raw_l2: float, trials: int = 3, trial_size: int = 32, batch: int = 256,
                     max_candidates: int = 100_000) -> list[torch.Tensor]:
    """One accepted coefficient tensor per class, drawn and kept greedily (module docstring).

    Candidates are drawn and tried ``batch`` at a time, then considered one by one in draw order.
    """
    accepted: list[torch.Tensor] = []
    for _ in range(0, max_candidates, batch):
        candidates = torch.stack([draw_coefficients(channels, gen) for _ in range(batch)])
        noise = ar_fields(candidates.repeat_interleave(trials, 0), batch * trials, trial_size, trial_size, gen)
        noise = noise.view(batch, trials, *noise.shape[1:])
        for candidate, trial in zip(candidates, noise):
            if not torch.isfinite(trial).all() or trial.flatten(1).norm(dim=1).max() > max_raw_l2:
                continue
            if all(response(earlier, trial).min() >= min_response for earlier in accepted):
                accepted.append(candidate)
                if len(accepted) == num_classes:
                    return accepted
    raise ValueError(f"found {len(accepted)} of {num_classes} AR processes in {max_candidates} candidates; "
                     "lower min_response or raise max_raw_l2")


@register("ar", "autoregressive perturbations: one 3x3 AR process per class, L2 = 1 (Sandoval-Segura et al. 2022)")
class AutoregressivePerturbations:
    """Sample-wise noise from a per-class AR process, each image's scaled to L2 ``eps``.

    Args:
        eps: L2 radius on the [0, 1] scale (1.0, the paper's CIFAR setting).
        min_response: least response of an earlier class's filter to a new class's noise (10;
            the authors' CIFAR-100 value is 3).
        max_raw_l2: largest L2 norm of a trial noise before scaling (50): no growing processes.
        seed: seeds the processes and every image's noise.
    """

    def __init__(self, eps: float = 1.0, min_response: float = 10.0, max_raw_l2: float = 50.0, seed: int = 0):
        check_float("eps", eps, 0.0, 1e4, low_open=True)
        check_float("min_response", min_response, 0.0, 1e9)
        check_float("max_raw_l2", max_raw_l2, 0.0, 1e9, low_open=True)
        check_int("seed", seed, low=0)
        self.params = {"eps": eps, "min_response": min_response, "max_raw_l2": max_raw_l2, "seed": seed}

    def generate(self, dataset: ImageDataset) -> Poison:
        p = self.params
        started = time.perf_counter()
        c, h, w = dataset.shape
        gen = torch.Generator().manual_seed(p["seed"])
        processes = select_processes(dataset.num_classes, c, gen, p["min_response"], p["max_raw_l2"])
        noise = torch.zeros(len(dataset), c, h, w, dtype=torch.float64)
        for k, coefficients in enumerate(processes):
            rows = (dataset.labels == k).nonzero().flatten()
            noise[rows] = ar_fields(coefficients, len(rows), h, w, gen)
        delta = scale_to_budget(dataset.images, noise, "l2", p["eps"])
        metadata = {"method": "ar", "params": p, "norm": "l2", "radius": p["eps"], "seed": p["seed"],
                    "coefficients": [t.tolist() for t in processes],
                    "wall_s": time.perf_counter() - started, "device": "cpu"}
        return Poison.from_perturbation(dataset, delta, metadata, classwise=False)
