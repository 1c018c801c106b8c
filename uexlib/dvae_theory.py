"""Theorem 2 of the D-VAE paper (Yu et al., ICML 2024), checked numerically.

A feature ``v`` that is a two-class Gaussian mixture, means ``mu^0, mu^1`` and standard deviation
``sigma``, normalized to zero mean and unit variance (eq. 9), has the density
``p(v) = [N(v; -d, s) + N(v; d, s)] / 2`` with ``d = delta / sqrt(sigma^2 + delta^2)``,
``s = sigma / sqrt(sigma^2 + delta^2)``, ``delta = |mu^0 - mu^1| / 2``. With ``r = delta / sigma``,
Theorem 2 bounds its KL divergence to N(0, 1):

    ln(1 + r^2) / 2 - ln 2  <=  KLD(p || N(0, 1))  <=  ln(1 + r^2) / 2,

and the divergence grows with ``r`` (eq. 11). The more separable a feature (the stronger a
poison's shortcut), the more rate a VAE must spend to keep it, so a KL limit removes it first.
"""
from __future__ import annotations

import math

import torch


def theorem2_bounds(r: float) -> tuple[float, float]:
    """The lower and upper bounds of eq. 10 for separation ``r = delta / sigma`` (> 0)."""
    if not r > 0:
        raise ValueError(f"r must be > 0, got {r!r}")
    upper = 0.5 * math.log1p(r * r)
    return upper - math.log(2.0), upper


def mixture_kld(r: float, points: int = 400_001) -> float:
    """KLD between the normalized two-Gaussian mixture of eq. 9 and N(0, 1), by the trapezoid rule
    in float64 over +-(1 + 12 s) standard deviations (the mixture has unit variance)."""
    if not r >= 0:
        raise ValueError(f"r must be >= 0, got {r!r}")
    d, s = r / math.sqrt(1 + r * r), 1 / math.sqrt(1 + r * r)
    v = torch.linspace(-(d + 12 * s) - 1, d + 12 * s + 1, points, dtype=torch.float64)
    log_norm = -0.5 * math.log(2 * math.pi)
    log_p = torch.logsumexp(torch.stack([log_norm - math.log(s) - 0.5 * ((v - m) / s) ** 2 for m in (-d, d)]),
                            0) - math.log(2)
    log_q = log_norm - 0.5 * v ** 2
    return float(torch.trapezoid(log_p.exp() * (log_p - log_q), v))
