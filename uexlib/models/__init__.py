"""Model registry: build any architecture by name with a uniform signature.

Every builder has the signature ``builder(num_classes, in_channels, width)``
and returns a module taking NCHW float input in [0, 1] (normalization happens
inside the model).
"""

from typing import Callable, List

from torch import nn

from ..registry import Registry

__all__ = ["REGISTRY", "create", "list_models", "register"]

Builder = Callable[[int, int, float], nn.Module]

REGISTRY = Registry("model", reserved=("num_classes", "in_channels"))


def register(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder(num_classes, in_channels, width)`` as ``name``."""
    return REGISTRY.register(name)


def list_models() -> List[str]:
    """Sorted names of all registered models."""
    return REGISTRY.names()


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def create(name: str, num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> nn.Module:
    """Build the registered model ``name``.

    ``width`` multiplies every channel count of the architecture.
    """
    builder = REGISTRY.get(name)
    if not _is_int(num_classes) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if not _is_int(in_channels) or in_channels < 1:
        raise ValueError(f"in_channels must be an int >= 1, got {in_channels!r}")
    # the negated comparison also rejects NaN
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width <= 8:
        raise ValueError(f"width must be in (0, 8], got {width!r}")
    return builder(num_classes, in_channels, float(width))


# Imported last so that each family module can use ``register`` on import.
from . import cnn, convnet, densenet, mobilenet, resnet, vgg, wrn  # noqa: E402,F401
