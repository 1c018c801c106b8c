"""Poison generators: ``create(name, **params)`` then ``generate(train_set) -> Poison``.

``uex poison --list`` prints every generator with its defaults.
"""
from __future__ import annotations

from ..profiles import Profile
from ..profiles import get as get_profile
from ..registry import ParameterError, Registry

GENERATORS = Registry("generator")
register = GENERATORS.register


def list_generators() -> list[str]:
    return GENERATORS.names()


def create(name: str, profile: Profile | str | None = None, **params):
    """Build the generator ``name``; ``profile`` fills its surrogate and budget where ``params`` do not.

    The profile's settings for ``name`` (``profile.generators[name]``) must all be parameters
    of the generator: a profile never passes a setting that would be silently dropped. Explicit
    ``params`` always win over the profile's values.
    """
    GENERATORS.check_params(name, params)
    if profile is not None:
        profile = get_profile(profile)
        accepted = GENERATORS.defaults(name)
        settings = dict(profile.generators.get(name, {}))
        try:
            GENERATORS.check_params(name, settings)
        except ParameterError as error:
            raise ParameterError(f"profile {profile.name!r}: {error}") from None
        shared = {"surrogate": profile.surrogate, "surrogate_width": profile.surrogate_width}
        settings = {**{k: v for k, v in shared.items() if k in accepted}, **settings}
        params = {**settings, **params}
    return GENERATORS.create(name, **params)


from . import ar, em, lsp, ntga, ops, rem, robustness, sc, sem, sep, tap  # noqa: E402,F401  (each registers itself)

__all__ = ["GENERATORS", "create", "list_generators", "register"]
