"""LFU: orthogonal projection, from "What can we learn from unlearnable datasets?"
(Sandoval-Segura, Singla, Geiping, Goldblum and Goldstein, NeurIPS 2023), the D-VAE paper's "LFU".

Class-wise, linearly separable poisons (LSP, OPS, class-wise EM) are found by a linear model:
a bias-free linear classifier trained on the flattened poisoned images learns one weight vector
per class that points along that class's perturbation. Projecting every image onto the
orthogonal complement of those C directions removes what the classifier used:

    W = linear classifier weights (C x D), rows normalized; Q = orthonormal basis of its rows (QR);
    x <- x - Q Q^T x.

The linear model: plain SGD, lr 0.1, batch 1024, 20 epochs, lr x0.1 at epochs 10 and 15 (the
authors' public code; their loader does not shuffle, this one does, seeded). Their projected
images are left unclipped; a training set here is 8-bit images, so they are clipped to [0, 1]
and rounded. Their final training adds rotations, colour jitter and CutMix; here the purified
set is trained like any other, so that the purification's own effect is measured.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data import ImageDataset
from ..runtime import check_float, check_int, generator
from ..runtime import device as pick_device
from . import PURIFIERS
from .base import Purifier, map_images


@PURIFIERS.register("lfu", "orthogonal projection off a linear probe's class directions (Sandoval-Segura et al. 2023)")
class OrthogonalProjection(Purifier):
    """Fit a linear classifier on the (poisoned) training set; project its C class directions out.

    Args:
        epochs, batch_size, lr: the linear classifier's SGD (20, 1024, 0.1; x0.1 at 50 % and 75 %).
        seed: seeds the classifier's initialization and the batch order.
        device: where the classifier trains (``"auto"``).
    """

    def __init__(self, epochs: int = 20, batch_size: int = 1024, lr: float = 0.1, seed: int = 0,
                 device: str = "auto"):
        check_int("epochs", epochs, low=1)
        check_int("batch_size", batch_size, low=1)
        check_float("lr", lr, 0.0, 10.0, low_open=True)
        check_int("seed", seed, low=0)
        self.params = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed}
        self.device = pick_device(device)
        self.basis: torch.Tensor | None = None      # (D, C) orthonormal class directions after fit

    def fit(self, train_set: ImageDataset) -> "OrthogonalProjection":
        p, dev = self.params, self.device
        features = train_set.images.flatten(1).to(dev)
        labels = train_set.labels.to(dev)
        torch.manual_seed(p["seed"])
        linear = torch.nn.Linear(features.shape[1], train_set.num_classes, bias=False).to(dev)
        optimizer = torch.optim.SGD(linear.parameters(), lr=p["lr"])
        milestones = (p["epochs"] // 2, p["epochs"] * 3 // 4)
        gen = generator(p["seed"], dev)
        for epoch in range(p["epochs"]):
            for group in optimizer.param_groups:
                group["lr"] = p["lr"] * 0.1 ** sum(epoch >= m for m in milestones)
            order = torch.randperm(len(features), device=dev, generator=gen)
            for start in range(0, len(order), p["batch_size"]):
                rows = order[start:start + p["batch_size"]]
                loss = F.cross_entropy(linear(features[rows].float() / 255), labels[rows])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        directions = F.normalize(linear.weight.detach(), dim=1)           # (C, D)
        self.basis = torch.linalg.qr(directions.T).Q                      # (D, C), orthonormal columns
        return self

    def purify(self, dataset: ImageDataset) -> ImageDataset:
        if self.basis is None:
            raise ValueError("lfu: call fit(train_set) (or apply) before purify")
        basis = self.basis.cpu()

        def project(x: torch.Tensor) -> torch.Tensor:
            flat = x.flatten(1)
            return (flat - (flat @ basis) @ basis.T).view_as(x)

        return dataset.with_images(map_images(dataset.images, project))
