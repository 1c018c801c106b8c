"""PGD primitives shared by generators and defenses (Madry et al., ICLR 2018, eq. 2).

Inputs follow one contract: NCHW float in [0, 1]; models normalize inside. Inputs are never
mutated; the functions return a new perturbation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def project_linf(x: torch.Tensor, delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Clip ``delta`` into the L-inf ball of radius ``eps`` and keep ``x + delta`` in [0, 1]."""
    delta = delta.clamp(-eps, eps)
    return (x + delta).clamp(0, 1) - x


def pgd_linf(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, delta: torch.Tensor, eps: float,
             step_size: float, steps: int, minimize: bool) -> torch.Tensor:
    """``steps`` signed-gradient steps on the cross-entropy of ``model(x + delta)``.

    ``minimize=True`` descends the loss (error-minimizing noise, Huang et al., ICLR 2021, eq. 2);
    ``minimize=False`` ascends it (adversarial examples). Returns the projected perturbation,
    detached. The caller picks the model's mode (train/eval); parameters get no gradient.
    """
    sign = -1.0 if minimize else 1.0
    delta = project_linf(x, delta.detach(), eps)
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        for _ in range(steps):
            delta.requires_grad_(True)
            loss = F.cross_entropy(model(x + delta), y)
            (grad,) = torch.autograd.grad(loss, delta)
            delta = project_linf(x, delta.detach() + sign * step_size * grad.sign(), eps)
    finally:
        for p in params:
            p.requires_grad_(True)
    return delta.detach()
