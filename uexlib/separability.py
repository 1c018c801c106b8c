"""How much of a poison's noise is about the class: two measures of its shortcut structure.

Yu et al., *Availability Attacks Create Shortcuts* (KDD 2022), Sec. 3, find that the perturbations of
availability poisons are linearly separable by class: a linear model fitted to the noise alone
(no image) classifies it. Their measure is the linear model's training accuracy; here it is the
accuracy on held-out noise, so that a probe cannot score by memorizing samples when there are
fewer of them than pixels.

The share of the noise's variance that its class means explain asks a narrower question: is the
class information a fixed pattern per class? Class-wise noise has a share of 1; noise whose class
information varies from image to image can be linearly separable with a share near 0. The
D-VAE's auxiliary decoder predicts the perturbation from a class embedding and a rate-limited
latent (D-VAE paper eq. 14), so the share bounds what the class alone lets it recover.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .runtime import check_float, check_int


def _check(delta: torch.Tensor, labels: torch.Tensor, num_classes: int) -> None:
    check_int("num_classes", num_classes, low=2)
    if delta.ndim < 2 or labels.ndim != 1 or len(delta) != len(labels):
        raise ValueError(f"delta must be (N, ...) with one label per row, got delta {tuple(delta.shape)} "
                         f"and labels {tuple(labels.shape)}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes - 1}] for num_classes={num_classes}")


def class_mean_share(delta: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """Fraction of the per-sample noise ``delta`` (N, C, H, W)'s variance explained by its class means:
    ``1 - sum ||delta_i - mean_{y_i}||^2 / sum ||delta_i - mean||^2`` (1 for class-wise noise)."""
    _check(delta, labels, num_classes)
    flat = delta.flatten(1).double()
    total = (flat - flat.mean(0)).square().sum()
    if total == 0:
        raise ValueError("delta has no variance: the share of a constant noise is undefined")
    counts = torch.bincount(labels, minlength=num_classes).clamp(min=1).double()
    means = torch.zeros(num_classes, flat.shape[1], dtype=flat.dtype).index_add_(0, labels, flat) / counts[:, None]
    return float(1 - (flat - means[labels]).square().sum() / total)


def linear_probe_accuracy(delta: torch.Tensor, labels: torch.Tensor, num_classes: int, held_out: float = 0.2,
                          steps: int = 100, lr: float = 1e-2, weight_decay: float = 1e-4, seed: int = 0) -> float:
    """Held-out accuracy (%) of a softmax regression fitted to the noise alone (Yu et al. 2022, Sec. 3).

    The noise is flattened and scaled to unit standard deviation; a seeded random ``held_out``
    fraction of the rows is kept out; the rest fits a linear layer by full-batch Adam (``steps``,
    ``lr``) on the cross-entropy plus ``weight_decay`` times the squared weights. Chance is
    100 / ``num_classes``.
    """
    _check(delta, labels, num_classes)
    check_float("held_out", held_out, 0.0, 1.0, low_open=True)
    check_int("steps", steps, low=1)
    check_float("lr", lr, 0.0, 10.0, low_open=True)
    check_float("weight_decay", weight_decay, 0.0, 1e3)
    check_int("seed", seed, low=0)
    count = round(held_out * len(labels))
    if count < 1 or count >= len(labels):
        raise ValueError(f"held_out={held_out} leaves no rows to fit or to test among {len(labels)}")
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=gen)
    test, fit = order[:count], order[count:]
    flat = delta.detach().flatten(1).float().cpu()
    flat = flat / flat.std().clamp(min=1e-12)
    labels = labels.cpu()
    weight = torch.zeros(flat.shape[1], num_classes, requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(flat[fit] @ weight + bias, labels[fit]) + weight_decay * weight.square().sum()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return float(((flat[test] @ weight + bias).argmax(1) == labels[test]).double().mean() * 100)
