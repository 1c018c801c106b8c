"""Color transforms of float image batches (N, C, H, W) in [0, 1]: per-sample, batched, differentiable.

* :func:`to_grayscale`: ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` (the thesis of Berns,
  2021, eq. 3.1), replicated over the three channels so a color model takes it unchanged.
* :func:`color_gray`: the "CG" augmentation of progressive staged training (Dang et al. 2023,
  Sec. 3.2 and App. C.1): color jitter with probability 0.8, then grayscale with probability 0.2.

Every operation is differentiable in its input, so generators can put these transforms inside
the expectation over transformation of their PGD (REM-T).
"""
from __future__ import annotations

import math

import torch

LUMA = (0.299, 0.587, 0.114)


def to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """The luma of each RGB image, repeated over 3 channels; single-channel input is returned as is."""
    if x.shape[1] == 1:
        return x
    weights = torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True).expand_as(x)


def _uniform(n: int, low: float, high: float, like: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    return (torch.rand(n, device=like.device, generator=gen, dtype=like.dtype) * (high - low) + low).view(-1, 1, 1, 1)


def _rotate_hue(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate the chroma of each image by ``angle`` (radians, one per image) in YIQ space."""
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                          device=x.device, dtype=x.dtype)
    from_yiq = torch.linalg.inv(to_yiq)
    cos, sin = angle.flatten().cos(), angle.flatten().sin()
    rotation = torch.zeros(len(x), 3, 3, device=x.device, dtype=x.dtype)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1], rotation[:, 1, 2], rotation[:, 2, 1], rotation[:, 2, 2] = cos, -sin, sin, cos
    matrix = from_yiq @ rotation @ to_yiq                      # (N, 3, 3)
    return torch.einsum("nij,njhw->nihw", matrix, x)


def color_jitter(x: torch.Tensor, gen: torch.Generator | None, brightness: float = 0.4, contrast: float = 0.4,
                 saturation: float = 0.4, hue: float = 0.1) -> torch.Tensor:
    """Random brightness, contrast, saturation (factors in [1 - s, 1 + s]) and hue (shift in [-h, h]).

    The strengths default to SimCLR's (Chen et al. 2020), the augmentation the ST paper cites for
    CG; it does not print them. Hue is a chroma rotation in YIQ space rather than torchvision's
    HSV shift (linear, hence cheap and smooth for gradients); the four operations are applied in
    this fixed order rather than a random one.
    """
    n = len(x)
    x = (x * _uniform(n, 1 - brightness, 1 + brightness, x, gen)).clamp(0, 1)
    mean = to_grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    x = (mean + (x - mean) * _uniform(n, 1 - contrast, 1 + contrast, x, gen)).clamp(0, 1)
    if x.shape[1] == 3:
        gray = to_grayscale(x)
        x = (gray + (x - gray) * _uniform(n, 1 - saturation, 1 + saturation, x, gen)).clamp(0, 1)
        x = _rotate_hue(x, _uniform(n, -hue, hue, x, gen) * 2 * math.pi).clamp(0, 1)
    return x


def color_gray(x: torch.Tensor, gen: torch.Generator | None, jitter_p: float = 0.8,
               gray_p: float = 0.2) -> torch.Tensor:
    """CG (ST paper, App. C.1): color jitter with probability ``jitter_p``, then grayscale with ``gray_p``."""
    n = len(x)
    jitter = (torch.rand(n, device=x.device, generator=gen) < jitter_p).view(-1, 1, 1, 1)
    x = torch.where(jitter, color_jitter(x, gen), x)
    gray = (torch.rand(n, device=x.device, generator=gen) < gray_p).view(-1, 1, 1, 1)
    return torch.where(gray, to_grayscale(x), x)
