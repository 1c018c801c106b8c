"""Defenses: training-time defenses (attached to the trainer) and purifiers (applied to a set once).

Two interfaces, two registries:

* :class:`Defense` changes how the trainer trains: it may transform each batch, replace the
  loss, give parameter groups their own learning-rate factors, act at the end of an epoch, and
  carries a key that goes into the training checkpoint. ``ue.defenses.create("none")`` is
  ordinary training.
* :class:`Purifier` is fitted on a training set (some fit a model of their own), then maps a set
  to a new set before ordinary training.
"""
from __future__ import annotations

from ..registry import Registry
from .base import Defense, Purifier, StepContext

DEFENSES = Registry("defense")
PURIFIERS = Registry("purifier")


def create(name: str, **params) -> Defense:
    """The training-time defense ``name`` with ``params`` (unknown names and keywords fail first)."""
    return DEFENSES.create(name, **params)


def create_purifier(name: str, **params) -> Purifier:
    """The purifier ``name`` with ``params`` (unknown names and keywords fail first)."""
    return PURIFIERS.create(name, **params)


def names() -> list[str]:
    return DEFENSES.names()


def purifier_names() -> list[str]:
    return PURIFIERS.names()


@DEFENSES.register("none", "ordinary training: the trainer's standard augmentation and cross-entropy")
class NoDefense(Defense):
    """Ordinary training (the ``defense=none`` rows of the results tables)."""


# noqa below: each module registers its defenses or purifiers on import.
from . import (adversarial, autoaugment, avatar, bdr, blur, cg, coarse_dropout, cutout, dropout,  # noqa: E402,F401
               early_stop, gaussian_noise, grayscale, iss, jpeg, lfu, lowpass, mix, staged, ueraser,
               vae)

__all__ = ["DEFENSES", "PURIFIERS", "Defense", "NoDefense", "Purifier", "StepContext", "create",
           "create_purifier", "names", "purifier_names"]
