"""How a model clusters its training data: the Activation Cluster Measurement (ACM) and GMV.

Dang et al., *Flew Over Learning Trap: Learn Unlearnable Samples by Progressive Staged Training*
(2023), Sec. 3.2. For activations ``A_i`` of the samples of class ``i`` at a layer:

* centre ``C(i)`` = mean of ``A_i``; intra-class distance ``sigma(i)`` = mean L2 distance to the
  centre (eq. 3); radius ``R(i)`` = the largest such distance;
* inter-class distance ``L(i, j)`` = the smallest L2 distance between a sample of class ``i`` and
  one of class ``j`` (eq. 4; the paper prints ``A_i`` twice, ``A_j`` is meant);
* ``ACM = 1 / (k (k - 1)) * sum_{i != j} L(i, j) / (R(i) sigma(i) + R(j) sigma(j))`` (eq. 5).

A model trapped by a shortcut separates its (poisoned) training classes into tight, distant
clusters, so its ACM rises; staged training (:mod:`uexlib.defenses.staged`) watches it. ACM has
the units of 1 / distance, so its threshold depends on the architecture's activation scale.

GMV (the paper's Fig. 2(c)) is the mean absolute gradient of the loss with respect to the
weights of a shallow layer: near zero once that layer has stopped learning.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attacks import autocast


def penultimate_layer(model: nn.Module) -> str:
    """Name of the model's last ``nn.Linear``, whose *input* is the penultimate activation."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer; pass layer= the module to measure")
    return names[-1]


def _module(model: nn.Module, layer: str) -> nn.Module:
    modules = dict(model.named_modules())
    if layer not in modules:
        shown = ", ".join(name for name in modules if name)
        raise ValueError(f"layer {layer!r} is not a module of {type(model).__name__}; modules: {shown}")
    return modules[layer]


@torch.no_grad()
def activations(model: nn.Module, images: torch.Tensor, layer: str | None = None,
                batch_size: int = 500) -> torch.Tensor:
    """Flattened activations (N, D) of ``images`` (float, [0, 1], on the model's device) at ``layer``.

    ``layer`` names a module: its output is taken, except for the default (``None``), the input of
    the last ``nn.Linear`` (the penultimate activation the paper uses). Eval mode; float32 out.
    """
    take_input = layer is None
    module = _module(model, penultimate_layer(model) if take_input else layer)
    captured: list[torch.Tensor] = []

    def hook(_module, inputs, output):
        captured.append((inputs[0] if take_input else output).flatten(1).float())

    was_training = model.training
    model.eval()
    handle = module.register_forward_hook(hook)
    try:
        for start in range(0, len(images), batch_size):
            with autocast(images.device):
                model(images[start:start + batch_size].contiguous(memory_format=torch.channels_last))
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(captured)


def acm(features: torch.Tensor, labels: torch.Tensor) -> float:
    """ACM (eq. 5) of activations ``features`` (N, D) with class ``labels`` (N,); needs >= 2 classes."""
    if features.ndim != 2 or len(features) != len(labels):
        raise ValueError(f"features must be (N, D) with one label per row, got {tuple(features.shape)} "
                         f"and {tuple(labels.shape)} labels")
    classes = labels.unique()
    if len(classes) < 2:
        raise ValueError(f"ACM needs samples of at least 2 classes, got {len(classes)}")
    features = features.double()
    sigma, radius, members = [], [], []
    for label in classes:
        rows = features[labels == label]
        dist = (rows - rows.mean(0)).norm(dim=1)
        sigma.append(dist.mean())
        radius.append(dist.max())
        members.append(rows)
    spread = torch.stack(radius) * torch.stack(sigma)                     # R(i) sigma(i)
    total = features.new_zeros(())
    for i in range(len(classes)):
        for j in range(i + 1, len(classes)):
            gap = torch.cdist(members[i], members[j]).min()                # L(i, j) = L(j, i)
            total = total + 2 * gap / (spread[i] + spread[j]).clamp_min(1e-30)
    k = len(classes)
    return float(total / (k * (k - 1)))


def model_acm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, layer: str | None = None) -> float:
    """ACM of ``model`` on ``images`` / ``labels`` at ``layer`` (default: the penultimate activation)."""
    return acm(activations(model, images, layer), labels.to(images.device))


def gradient_magnitude(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, layer: str | None = None,
                       batch_size: int = 500) -> float:
    """GMV: mean |dL/dW| over the weights of ``layer`` (default: the first layer with weights).

    The cross-entropy is averaged over ``images``; eval mode, so batch-norm statistics do not
    move, and no ``.grad`` of the model is touched. A frozen layer (``requires_grad`` off, as
    :func:`uexlib.defenses.staged.transplant_layers` leaves it) is measured too and stays frozen.
    """
    if layer is None:
        layer = next(name for name, module in model.named_modules()
                     if isinstance(getattr(module, "weight", None), torch.Tensor) and module.weight.ndim > 1)
    weight = _module(model, layer).weight
    was_training, frozen = model.training, not weight.requires_grad
    model.eval()
    weight.requires_grad_(True)
    total = torch.zeros_like(weight, dtype=torch.float32)
    try:
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size].contiguous(memory_format=torch.channels_last)
            with autocast(images.device):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), labels[start:start + batch_size], reduction="sum")
            total += torch.autograd.grad(loss, weight)[0].float()
    finally:
        model.train(was_training)
        weight.requires_grad_(not frozen)
    return float((total / len(images)).abs().mean())


def tsne(features: torch.Tensor, seed: int = 0, perplexity: float = 30.0) -> torch.Tensor:
    """2-D t-SNE embedding (N, 2) of ``features`` (N, D), seeded (scikit-learn's ``TSNE``, ST Fig. 3)."""
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise ImportError("t-SNE needs scikit-learn: pip install scikit-learn") from None
    points = TSNE(n_components=2, perplexity=min(perplexity, (len(features) - 1) / 3), init="pca",
                  random_state=seed).fit_transform(features.detach().cpu().double().numpy())
    return torch.from_numpy(points)
