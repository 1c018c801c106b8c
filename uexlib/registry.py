"""One registry type for models, generators, defenses and purifiers.

Every method of the library is found by name: ``ue.generators.create("em", eps=8/255)``. A
registry checks the name and every keyword before anything runs, so a typo fails in one line:

    unknown generator 'emm'; available: em
    generator 'em' takes no parameter 'epsilon'; accepted: eps, mode, steps, ...
"""
from __future__ import annotations

import inspect
from typing import Any, Callable


class UnknownNameError(KeyError, ValueError):
    """An unknown registry name; both a KeyError (a lookup) and a ValueError (bad user input)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ParameterError(ValueError):
    """A keyword that the registered method does not accept."""


class Registry:
    """Named entries of one kind (``"model"``, ``"generator"``, ...), each a class or a function.

    ``reserved`` names the keywords that the registry passes itself (a model's ``num_classes``)
    and that are therefore not listed as the entry's parameters.
    """

    def __init__(self, kind: str, reserved: tuple[str, ...] = ()):
        self.kind = kind
        self.reserved = reserved
        self._entries: dict[str, Callable] = {}
        self._summaries: dict[str, str] = {}

    def register(self, name: str, summary: str = "") -> Callable[[Callable], Callable]:
        """Decorator adding a class or function under ``name`` (with a one-line ``summary``)."""
        def add(entry: Callable) -> Callable:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = entry
            doc = inspect.getdoc(entry) or ""
            self._summaries[name] = summary or doc.split("\n\n")[0].replace("\n", " ")
            return entry
        return add

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests that register a temporary entry)."""
        self.get(name)
        del self._entries[name], self._summaries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str) -> Callable:
        if name not in self._entries:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names()) or '(none)'}")
        return self._entries[name]

    def _signature(self, name: str) -> dict[str, inspect.Parameter]:
        entry = self.get(name)
        target = entry.__init__ if inspect.isclass(entry) else entry
        params = inspect.signature(target).parameters
        return {k: p for k, p in params.items()
                if k != "self" and k not in self.reserved and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}

    def defaults(self, name: str) -> dict[str, Any]:
        """Every parameter of ``name`` with its default (``inspect.Parameter.empty`` if required)."""
        return {k: p.default for k, p in self._signature(name).items()}

    def check_params(self, name: str, params: dict) -> None:
        """Raise :class:`ParameterError` for a keyword ``name`` does not take."""
        accepted = self._signature(name)
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            plural = "s" if len(unknown) > 1 else ""
            raise ParameterError(f"{self.kind} {name!r} takes no parameter{plural} {', '.join(map(repr, unknown))}; "
                                 f"accepted: {', '.join(accepted)}")

    def create(self, name: str, *args, **params):
        """Build ``name`` with ``params`` after checking every keyword."""
        self.check_params(name, params)
        return self.get(name)(*args, **params)

    def describe(self) -> list[dict]:
        """One row per entry: name, summary and defaults (for ``uex ... --list``)."""
        rows = []
        for name in self.names():
            defaults = {k: ("(required)" if v is inspect.Parameter.empty else v)
                        for k, v in self.defaults(name).items()}
            rows.append({"name": name, "summary": self._summaries[name], "defaults": defaults})
        return rows

    def format_list(self) -> str:
        """Human-readable listing: each entry, its summary and its defaults."""
        lines = []
        for row in self.describe():
            lines.append(f"{row['name']}: {row['summary']}")
            shown = ", ".join(f"{k}={_show(k, v)}" for k, v in row["defaults"].items())
            lines.append(f"    {shown or '(no parameters)'}")
        return "\n".join(lines) if lines else f"(no {self.kind} registered)"


def _show(key: str, value) -> str:
    """A default as written: radii and step sizes (``eps*``, ``*step_size``) in 1/255 units when whole."""
    pixel_scale = key.startswith("eps") or key.endswith("step_size")
    if pixel_scale and isinstance(value, float) and 0 < value < 1 and abs(value * 255 - round(value * 255)) < 1e-9:
        return f"{round(value * 255)}/255"
    return repr(value)


def with_defaults(base: type, **defaults) -> Callable[[type], type]:
    """Class decorator: the decorated subclass of ``base`` is ``base`` with other default values.

    The subclass's signature shows the new defaults, so registries list and check them exactly as
    for ``base``; the subclass body holds only its docstring and class attributes.
    """
    signature = inspect.signature(base.__init__)
    unknown = sorted(set(defaults) - set(signature.parameters))
    if unknown:
        raise TypeError(f"{base.__name__} has no parameters {unknown}")
    params = [p.replace(default=defaults[p.name]) if p.name in defaults else p
              for p in signature.parameters.values()]

    def decorate(cls: type) -> type:
        def __init__(self, **params):
            base.__init__(self, **{**defaults, **params})
        __init__.__signature__ = signature.replace(parameters=params)
        cls.__init__ = __init__
        return cls
    return decorate
