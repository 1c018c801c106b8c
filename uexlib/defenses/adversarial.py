"""Adversarial training: PGD (Madry et al., ICLR 2018) and FGSM (Goodfellow et al., ICLR 2015).

Both replace the training loss by the loss on adversarial examples of the batch,
``min_theta E max_{||delta|| <= eps} CE(f(x + delta), y)`` (Madry et al., eq. 2.1; REM eq. 2),
the inner maximization done by :func:`uexlib.attacks.pgd` under the trainer's autocast.
"""
from __future__ import annotations

import torch

from ..attacks import NORMS, pgd
from ..runtime import check_choice, check_eps, check_float, check_int
from . import DEFENSES
from .base import Defense, StepContext, cross_entropy

BN_MODES = ("eval", "train")


class _Adversarial(Defense):
    """The shared loss: attack the batch, then train on the attacked batch."""

    def loss(self, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.params
        if p["eps"] > 0:
            model = ctx.model
            model.train(p["bn_mode"] == "train")
            delta = pgd(model, x, y, eps=p["eps"], norm=p["norm"], steps=p["steps"], step_size=p["step_size"],
                        random_start=p["random_start"], generator=ctx.generator)
            model.train()
            x = x + delta
        logits = ctx.forward(x)
        return cross_entropy(logits, y), logits


def _check_common(eps, norm, bn_mode) -> None:
    check_choice("norm", norm, NORMS)
    check_eps(eps, high=1.0 if norm == "linf" else 3072.0, allow_zero=True)
    check_choice("bn_mode", bn_mode, BN_MODES)


@DEFENSES.register("pgd-at", "PGD adversarial training (Madry et al. 2018; REM App. A.4 and App. E)")
class PGDAdversarialTraining(_Adversarial):
    """PGD adversarial training (Madry et al., ICLR 2018, eq. 2.1; REM, Fu et al., ICLR 2022, App. A.4).

    Every training batch is replaced by its PGD adversarial examples before the SGD step.

    Args:
        eps: radius of the attack on the [0, 1] pixel scale (REM's rho_a: 0-8/255 for L-inf;
            REM App. E: 50/255 or 100/255 for L2, 1000/255 or 3000/255 for L1). 0 is ordinary
            training.
        norm: ``"linf"``, ``"l2"`` or ``"l1"``.
        steps: PGD steps (REM App. A.4: 10); step_size: default ``2 * eps / steps``, which is
            REM's ``eps / 5`` at 10 steps (App. A.4, Table 5) and still crosses the ball with fewer.
        random_start: start from a random point of the ball (Madry et al.).
        bn_mode: batch-norm statistics while attacking: ``"eval"`` (default: running statistics,
            so the attack does not disturb them) or ``"train"``.

    Example:
        >>> ue.train(model, poison.as_dataset(), test_set, defense=ue.defenses.create("pgd-at", eps=4/255))
    """

    def __init__(self, eps: float = 4 / 255, norm: str = "linf", steps: int = 10, step_size: float | None = None,
                 random_start: bool = True, bn_mode: str = "eval"):
        _check_common(eps, norm, bn_mode)
        check_int("steps", steps, low=1)
        step_size = 2 * eps / steps if step_size is None else step_size
        check_float("step_size", step_size, 0.0, float("inf"))
        self.params = {"eps": eps, "norm": norm, "steps": steps, "step_size": step_size,
                       "random_start": random_start, "bn_mode": bn_mode}


@DEFENSES.register("fgsm-at", "FGSM adversarial training, with or without random start (thesis Sec. 3.3-3.4)")
class FGSMAdversarialTraining(_Adversarial):
    """FGSM adversarial training (Goodfellow et al., ICLR 2015; Berns 2021, Sec. 2.3 and 3.3-3.4).

    One signed-gradient step of size ``step_size`` on every training batch. Without a random start
    the step is ``eps`` (the thesis, eq. 2.9); with one, the start is uniform in the ball and the
    step ``1.25 eps`` (Wong et al., ICLR 2020, "fast is better than free"), clipped to the ball.

    Args:
        eps: L-inf radius on the [0, 1] scale (the thesis: 4/255 and 8/255).
        random_start: start from a uniform point of the ball (default False, as the thesis).
        step_size: default ``eps`` without and ``1.25 eps`` with a random start.
        bn_mode: batch-norm statistics while attacking (``"eval"`` or ``"train"``).
    """

    def __init__(self, eps: float = 8 / 255, random_start: bool = False, step_size: float | None = None,
                 bn_mode: str = "eval"):
        _check_common(eps, "linf", bn_mode)
        step_size = (1.25 * eps if random_start else eps) if step_size is None else step_size
        check_float("step_size", step_size, 0.0, float("inf"))
        self.params = {"eps": eps, "norm": "linf", "steps": 1, "step_size": step_size,
                       "random_start": random_start, "bn_mode": bn_mode}
