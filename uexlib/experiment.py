"""One call from a profile name to what an experiment needs: datasets, models, generators, training.

    exp = ue.prepare("lab", dataset="cifar10", seed=0)
    poison = exp.poison("em", mode="classwise")      # made once, then reused from the poison store
    result = exp.train(poison.as_dataset())          # the profile's model and budget, seeded

so a notebook does not unpack a profile by hand.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from . import generators, models, profiles
from .data import ImageDataset, load_dataset
from .defenses import DEFENSES, PURIFIERS, Defense, Purifier
from .profiles import Profile
from .registry import ParameterError
from .runtime import check_int
from .store import PoisonStore
from .train import TrainResult, train


@dataclass(frozen=True)
class Experiment:
    """A profile bound to its data and seed; every method below is seeded by ``seed``."""

    profile: Profile
    train_set: ImageDataset
    test_set: ImageDataset
    seed: int
    device: str = "auto"
    store: PoisonStore | None = None  # where :meth:`poison` keeps poisons; None: the default store

    def model(self, name: str | None = None, width: float | None = None) -> torch.nn.Module:
        """A freshly initialized classifier (the profile's unless named), seeded."""
        torch.manual_seed(self.seed)
        return models.create(name or self.profile.model, self.train_set.num_classes, self.train_set.shape[0],
                             self.profile.width if width is None else width)

    def generator(self, name: str, **params):
        """The generator ``name`` with this profile's surrogate and budget and this seed; ``params`` win.

        The seed and device go to generators that take them (``ops`` has no randomness), and so
        does ``progress`` (the model-free generators finish in seconds and show no bar).
        """
        accepted = generators.GENERATORS.defaults(name)
        own = {k: v for k, v in {"seed": self.seed, "device": self.device}.items() if k in accepted}
        if "progress" in params and "progress" not in accepted:
            params = {k: v for k, v in params.items() if k != "progress"}
        return generators.create(name, profile=self.profile, **{**own, **params})

    def poison(self, name: str, train_set: ImageDataset | None = None, reuse: bool = True, **params):
        """The poison of generator ``name`` (built as :meth:`generator` does) on ``train_set`` (default
        the clean training set).

        With ``reuse`` it comes from the poison store (:class:`uexlib.store.PoisonStore`) when a
        poison with the same generator, parameters, data and code was made before, and is stored
        after it is made otherwise; ``reuse=False`` always generates and stores nothing.
        """
        if reuse not in (False, True):
            raise ValueError(f"reuse must be True or False, got {reuse!r}")
        generator = self.generator(name, **params)
        data = self.train_set if train_set is None else train_set
        if not reuse:
            return generator.generate(data)
        return (self.store or PoisonStore()).get(name, generator, data)

    def defense(self, name: str, **params) -> Defense:
        """The training-time defense ``name`` with this profile's settings for it; ``params`` win.
        A defense that takes ``clean_set`` (early stopping with clean validation images) gets this
        experiment's clean training set."""
        settings = dict(self.profile.defenses.get(name, {}))
        own = {"clean_set": self.train_set} if "clean_set" in DEFENSES.defaults(name) else {}
        try:
            DEFENSES.check_params(name, settings)
        except ParameterError as error:
            raise ParameterError(f"profile {self.profile.name!r}: {error}") from None
        return DEFENSES.create(name, **{**own, **settings, **params})

    def purifier(self, name: str, **params) -> Purifier:
        """The purifier ``name`` with this profile's settings for it and this seed; ``params`` win."""
        settings = dict(self.profile.defenses.get(name, {}))
        accepted = PURIFIERS.defaults(name)
        own = {k: v for k, v in {"seed": self.seed, "device": self.device}.items() if k in accepted}
        try:
            PURIFIERS.check_params(name, settings)
        except ParameterError as error:
            raise ParameterError(f"profile {self.profile.name!r}: {error}") from None
        return PURIFIERS.create(name, **{**own, **settings, **params})

    def budget(self, **overrides) -> dict:
        """Keyword arguments of :func:`uexlib.train` for this profile, with ``overrides``."""
        return {**self.profile.budget(), "seed": self.seed, "device": self.device, **overrides}

    def train(self, train_set: ImageDataset | None = None, defense: Defense | None = None,
              model: torch.nn.Module | None = None, **overrides) -> TrainResult:
        """Train the profile's model (or ``model``) on ``train_set`` (default the clean set), test on clean data."""
        if "epochs" in overrides and "iterations" not in overrides:
            overrides["iterations"] = None
        return train(model if model is not None else self.model(), train_set if train_set is not None
                     else self.train_set, self.test_set, defense=defense, **self.budget(**overrides))


def prepare(profile: str | Profile, dataset: str = "cifar10", root: str | os.PathLike | None = None,
            seed: int = 0, device: str = "auto", store: str | os.PathLike | None = None) -> Experiment:
    """Load ``dataset`` at the scale of ``profile`` (subsets drawn with ``seed``) and bind them.

    ``root`` is the dataset root (default ``$UEX_DATA_ROOT``); ``""`` means the default too.
    ``store`` is the poison store's folder (default ``$UEX_STORE``, else ``~/.cache/uexlib/poisons``).
    """
    check_int("seed", seed, low=0)
    cfg = profiles.get(profile)
    root = root or None
    return Experiment(profile=cfg,
                      train_set=load_dataset(dataset, "train", root, per_class=cfg.train_per_class, subset_seed=seed),
                      test_set=load_dataset(dataset, "test", root, per_class=cfg.test_per_class, subset_seed=seed),
                      seed=seed, device=device, store=PoisonStore(store or None))
