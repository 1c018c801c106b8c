"""Correlation coefficients for the book's analyses (SEM Fig. 3 and Table 10), without SciPy."""
from __future__ import annotations

import math

import pandas as pd


def kendall_tau(x, y) -> float:
    """Kendall's tau-b: (concordant - discordant pairs) over the geometric mean of untied pairs."""
    x, y = list(x), list(y)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    score = untied_x = untied_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            score += (dx > 0) - (dx < 0) if dy > 0 else ((dx < 0) - (dx > 0) if dy < 0 else 0)
            untied_x += dx != 0
            untied_y += dy != 0
    return score / math.sqrt(untied_x * untied_y) if untied_x and untied_y else float("nan")


def correlations(x, y) -> dict[str, float]:
    """Pearson's r, Spearman's rho (Pearson of average ranks) and Kendall's tau-b of ``x`` and ``y``."""
    x, y = pd.Series(list(x), dtype=float), pd.Series(list(y), dtype=float)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    if len(x) < 3:
        return {"pearson": float("nan"), "spearman": float("nan"), "kendall": float("nan")}
    return {"pearson": float(x.corr(y)), "spearman": float(x.rank().corr(y.rank())), "kendall": kendall_tau(x, y)}
