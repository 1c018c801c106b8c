"""SEM's two robustness measures: of a surrogate (R_theta) and of a defensive noise (R_delta_u).

Liu et al., AAAI 2024, Sec. "Rethinking the robust unlearnable example", Defs. 1-2, eqs. 8-9,
Algs. 2-3. Both are minus a loss under an adversarial perturbation of radius rho_a:

* R_theta (Def. 1, eq. 8): the surrogate theta is fixed; for each batch a fresh noise of radius
  rho_u minimizes the loss under the worst perturbation (REM's inner problem, eq. 7), and the loss
  it reaches is measured. A surrogate whose loss noise can drive down even under attack is robust.
* R_delta_u (Def. 2, eq. 9): the noise is fixed; a freshly initialized model is trained
  adversarially on the protected images, and its training loss is measured. A noise under which
  an adversarial trainer still reaches a low loss is robust.

The paper's algorithm titles are swapped against their bodies: Alg. 3, titled R_delta_u, fixes
the model and optimizes the noise (eq. 8, R_theta); Alg. 2, titled R_theta, fixes the noise and
trains the model (eq. 9, R_delta_u). These functions follow the definitions. Each returns minus
the mean of the per-batch losses the algorithms sum.

The settings of both measures (rho_u, alpha_u, K_u, rho_a, alpha_a, K_a, J, the transformations,
the model architecture and its SGD) are those of a ``rem`` generator, passed as ``measure``.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ..attacks import autocast
from ..data import DeviceLoader, ImageDataset, augment
from ..registry import ParameterError
from ..runtime import check_int, generator
from .rem import RobustErrorMinimizing
from .surrogate import surrogate_trainer


def _check_measure(measure) -> dict:
    if not isinstance(measure, RobustErrorMinimizing):
        raise ParameterError(f"measure must be a rem generator (ue.generators.create('rem', ...)), "
                             f"got {type(measure).__name__}")
    if measure.params["eps_adv"] == 0:
        raise ParameterError("measure: eps_adv must be > 0; both measures are defined under an adversarial "
                             "perturbation of radius rho_a = eps_adv")
    return measure.params


def surrogate_robustness(model: torch.nn.Module, dataset: ImageDataset, measure: RobustErrorMinimizing, *,
                         batches: int = 20, seed: int = 0) -> float:
    """R_theta of ``model`` on ``dataset`` (SEM Def. 1, eq. 8; computed as the body of Alg. 3).

    For each of ``batches`` shuffled batches: a noise from a random start, K_u signed steps on
    the loss averaged over J transformations, each under its PGD perturbation (``measure.noise``
    with adversarial perturbations, whatever ``measure.params["noise_perturbation"]`` says); then
    one more transformation and PGD perturbation, and the loss there. ``model`` is not modified
    (a copy is measured: batch statistics in train mode would otherwise move its running means).
    """
    p = _check_measure(measure)
    check_int("batches", batches, low=1)
    check_int("seed", seed, low=0)
    dev = measure.device
    model = copy.deepcopy(model).to(dev)
    loader = DeviceLoader(dataset, min(p["batch_size"], len(dataset)), dev, shuffle=True, seed=seed, drop_last=True)
    losses = torch.zeros((), device=dev)
    for b, (x, y, _) in zip(range(batches), loader.endless()):
        gen = generator(seed * 1_000_003 + b + 1, dev)
        delta_u = measure.noise(model, x, y, gen, perturbation="adversarial")  # Alg. 3 lines 4-12
        moved = augment(x + delta_u, p["transform"], gen)                     # line 13
        delta_a = measure.perturbation(model, moved, y, "adversarial", gen)   # line 14
        with torch.no_grad(), autocast(dev):
            logits = model(moved + delta_a)
        losses += F.cross_entropy(logits.float(), y)                         # line 15
    return -(losses / batches).item()


def noise_robustness(protected: ImageDataset, measure: RobustErrorMinimizing, *, iterations: int = 200,
                     seed: int = 0) -> float:
    """R_delta_u of the noise in ``protected`` (SEM Def. 2, eq. 9; computed as the body of Alg. 2).

    ``protected`` holds the protected images x + delta_u (``poison.as_dataset()``). A model of the
    measure's surrogate architecture, initialized from ``seed``, takes ``iterations`` SGD steps
    (the measure's lr, momentum and weight decay, constant rate) on t(x + delta_u) + delta_a with
    delta_a from PGD of radius rho_a; the loss of each step's batch is accumulated (Alg. 2 line 7).
    """
    p = _check_measure(measure)
    check_int("iterations", iterations, low=1)
    check_int("seed", seed, low=0)
    dev = measure.device
    settings = {**p, "seed": seed, "batch_size": min(p["batch_size"], len(protected))}
    trainer = surrogate_trainer(settings, protected, dev, total_steps=iterations, schedule="constant")
    loader = DeviceLoader(protected, settings["batch_size"], dev, shuffle=True, seed=seed, drop_last=True)
    losses = torch.zeros((), device=dev)
    for it, (x, y, _) in zip(range(iterations), loader.endless()):
        gen = generator(seed * 1_000_003 + it + 1, dev)
        moved = augment(x, p["transform"], gen)                              # Alg. 2 lines 3-4
        trainer.model.train(p["bn_mode"] == "train")
        delta_a = measure.perturbation(trainer.model, moved, y, "adversarial", gen)  # line 5
        loss, _, _ = trainer.step(moved + delta_a, y)                         # lines 6-7
        losses += loss
    return -(losses / iterations).item()
