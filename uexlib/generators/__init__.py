"""Poison generators: ``create(name, **params)`` then ``generate(train_set) -> Poison``."""
from __future__ import annotations

import inspect

from ..profiles import Profile

_REGISTRY: dict[str, type] = {}


def register(name: str):
    def add(cls):
        _REGISTRY[name] = cls
        return cls
    return add


def list_generators() -> list[str]:
    return sorted(_REGISTRY)


def create(name: str, profile: Profile | None = None, **params):
    """Build the generator ``name``; ``profile`` fills the budget and surrogate not given in ``params``.

    Explicit ``params`` always win over the profile's values.
    """
    if name not in _REGISTRY:
        raise KeyError(f"unknown generator {name!r}; available: {', '.join(list_generators())}")
    cls = _REGISTRY[name]
    if profile is not None:
        accepted = inspect.signature(cls.__init__).parameters
        defaults = {"surrogate": profile.surrogate, "surrogate_width": profile.surrogate_width, **profile.generator}
        params = {**{k: v for k, v in defaults.items() if k in accepted}, **params}
    return cls(**params)


from . import em  # noqa: E402,F401  (registers itself)

__all__ = ["create", "list_generators", "register"]
