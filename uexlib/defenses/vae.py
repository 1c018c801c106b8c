"""Purification by rate-constrained VAEs: ``vae`` (D-VAE paper eq. 3) and ``dvae`` (eq. 14, Alg. 1).

Yu et al., *Purify Unlearnable Examples via Rate-Constrained Variational Autoencoders*, ICML 2024.
A VAE whose KL divergence is held at a limit can only pass a limited amount of information per
image. Unlearnable perturbations are cheap to encode per class (low class-conditional entropy,
Prop. 2) yet strongly predictive, so under the constraint a VAE trained on the poisoned set
keeps them poorly (Thm. 2): its reconstructions are purer than its inputs.

* ``vae``: one VAE trained on ``||x - x_hat||^2 + lambda * max(KLD, kld_limit)`` (eq. 3); the
  purified set is the reconstructions.
* ``dvae``: the disentangling VAE of eq. 14 adds an auxiliary decoder that maps a trainable
  class embedding ``u_y`` together with the latent ``z`` to ``p_hat``, trained so that
  ``x_hat + p_hat = x``: what the image decoder cannot keep, and is predictable from the class,
  is the perturbation. Alg. 1: stage 1 trains a D-VAE with a small limit (1.0) on ``P0`` and
  subtracts its ``p_hat`` (``P1``); stage 2 trains a fresh D-VAE with a larger limit (3.0) on
  ``P1``, subtracts its ``p_hat`` (``P2``) and returns its reconstructions of ``P2`` (``P3``).

The slides give no architecture or optimizer; they are taken from the authors' public code and
said here: an encoder of the shape of a CIFAR ResNet-18's stem (3x3 convolution, two residual
blocks, one strided residual block) to a spatial latent of 256 channels at half resolution; two
decoders of transposed convolutions with instance normalization (the image decoder ends in a
sigmoid, ``p_hat`` is unbounded); the class embedding is a full latent-sized map added to the
decoder input; Adam at 5e-3 with a cosine schedule, gradient-norm clip 5, batch 128, 60 epochs
per stage, no augmentation; ``lambda = 0.01`` on a KLD summed over latent channels and averaged
over batch and positions, distortions as per-pixel means. ``z`` is sampled at purification too
(seeded), as the authors do; batch normalization runs in eval mode.

Differences from the authors' code, following the paper: eq. 14's perturbation term is
``||(x - x_hat) - p_hat||^2`` without clamping ``x_hat + p_hat`` to [0, 1], and the extra penalty
on ``p_hat``'s magnitude that their code adds after epoch 10 is not used. Intermediate sets are
rounded to 8 bits (their code truncates).
"""
from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import autocast
from ..data import ImageDataset
from ..models.layers import scale_channels
from ..models.resnet import BasicBlock
from ..runtime import check_choice, check_float, check_int, generator
from ..runtime import device as pick_device
from . import PURIFIERS
from .base import Purifier, to_uint8
from .generative import train_generative

# Table 7's ablations of Alg. 1 (see DisentanglingVAEPurifier).
ABLATIONS = ("none", "no_stage1", "no_i2", "no_stage2", "no_i3", "stage1_reconstruct")


def _decoder(channels: tuple[int, int, int], out_channels: int) -> nn.Sequential:
    wide, mid, narrow = channels
    return nn.Sequential(
        nn.ConvTranspose2d(wide, mid, 4, stride=2, padding=1), nn.InstanceNorm2d(mid), nn.ReLU(),
        nn.ConvTranspose2d(mid, mid, 3, padding=1), nn.InstanceNorm2d(mid), nn.ReLU(),
        nn.ConvTranspose2d(mid, narrow, 3, padding=1), nn.InstanceNorm2d(narrow), nn.ReLU(),
        nn.ConvTranspose2d(narrow, out_channels, 3, padding=1))


class RateConstrainedVAE(nn.Module):
    """Encoder to a spatial latent at half resolution, image decoder, optional perturbation decoder.

    ``forward(x, y, gen)`` returns ``(x_hat, p_hat, kld)``: reconstructions in [0, 1], the
    perturbation estimate (None without the auxiliary decoder) and the KL divergence to N(0, I)
    summed over latent channels, averaged over batch and positions.
    """

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, width: float = 1.0,
                 latent_channels: int = 256, disentangle: bool = False):
        super().__init__()
        channels, height, width_px = image_shape
        if height % 2 or width_px % 2:
            raise ValueError(f"image height and width must be even for the half-resolution latent, got {image_shape}")
        c64, c128, c32 = (scale_channels(c, width) for c in (64, 128, 32))
        self.encoder = nn.Sequential(nn.Conv2d(channels, c64, 3, padding=1, bias=False), nn.BatchNorm2d(c64), nn.ReLU(),
                                     BasicBlock(c64, c64, 1), BasicBlock(c64, c64, 1), BasicBlock(c64, c128, 2))
        self.to_mu = nn.Conv2d(c128, latent_channels, 1)
        self.to_logvar = nn.Conv2d(c128, latent_channels, 1)
        self.from_latent = nn.Conv2d(latent_channels, c128, 1)
        self.image_decoder = _decoder((c128, c64, c32), channels)
        self.latent_shape = (c128, height // 2, width_px // 2)
        self.perturbation_decoder = _decoder((c128, c64, c32), channels) if disentangle else None
        self.class_embedding = nn.Embedding(num_classes, math.prod(self.latent_shape)) if disentangle else None

    def forward(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator | None = None):
        features = self.encoder(x)
        mu, logvar = self.to_mu(features).float(), self.to_logvar(features).float().clamp(-30, 20)
        z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, device=mu.device, generator=gen)
        kld = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1).mean()
        hidden = self.from_latent(z.to(features.dtype))
        x_hat = torch.sigmoid(self.image_decoder(hidden).float())
        p_hat = None
        if self.perturbation_decoder is not None:
            u = self.class_embedding(y).view(-1, *self.latent_shape)
            p_hat = self.perturbation_decoder(hidden + u.to(hidden.dtype)).float()
        return x_hat, p_hat, kld


def vae_loss(x, x_hat, p_hat, kld, kld_limit: float, kl_weight: float) -> torch.Tensor:
    """Eq. 3 (``p_hat`` None) or eq. 14, per-pixel means: distortion (+ ``||(x - x_hat) - p_hat||^2``)
    + ``kl_weight * max(KLD, kld_limit)``; below the limit the rate term passes no gradient."""
    loss = F.mse_loss(x_hat, x)
    if p_hat is not None:
        loss = loss + F.mse_loss(x - x_hat, p_hat)
    return loss + kl_weight * torch.clamp(kld, min=kld_limit)


class _VAEPurifierBase(Purifier):
    """Shared training, caching and inference of :class:`RateConstrainedVAE` models."""

    disentangle = False

    def _check_common(self, epochs, batch_size, lr, kl_weight, latent_channels, width, seed, cache_dir):
        check_int("epochs", epochs, low=1)
        check_int("batch_size", batch_size, low=1)
        check_float("lr", lr, 0.0, 1.0, low_open=True)
        check_float("kl_weight", kl_weight, 0.0, 1e6)
        check_int("latent_channels", latent_channels, low=1)
        check_float("width", width, 0.0, 8.0, low_open=True)
        check_int("seed", seed, low=0)
        if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
            raise ValueError(f"cache_dir must be a folder path or None, got {cache_dir!r}")

    def _train(self, data: ImageDataset, kld_limit: float, stage: str) -> RateConstrainedVAE:
        """A fresh model trained on ``data`` (reused or resumed through ``cache_dir``)."""
        p = self.params
        torch.manual_seed(p["seed"])
        model = RateConstrainedVAE(tuple(data.images.shape[1:]), data.num_classes, p["width"], p["latent_channels"],
                                   self.disentangle).to(self.device, memory_format=torch.channels_last)

        def loss_fn(model, x, y, gen):
            x = x.contiguous(memory_format=torch.channels_last)
            with autocast(x.device):
                x_hat, p_hat, kld = model(x, y, gen)
            loss = vae_loss(x, x_hat, p_hat, kld, kld_limit, p["kl_weight"])
            return loss, {"mse": F.mse_loss(x_hat, x).detach(), "kld": kld.detach()}

        # A stage's model depends on its training set and settings, not on what is done with it later:
        # Table 7's ablations share the models they have in common.
        return train_generative(model, data, loss_fn, stage=stage,
                                key_params={k: v for k, v in p.items() if k not in ("cache_dir", "ablation")},
                                cache_dir=p["cache_dir"], epochs=p["epochs"], batch_size=p["batch_size"], lr=p["lr"],
                                seed=p["seed"], device=self.device, history=self.history, progress=self.progress,
                                name=type(self).__name__.lower())

    @torch.no_grad()
    def _infer(self, model: RateConstrainedVAE, images: torch.Tensor, labels: torch.Tensor, seed: int,
               batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(x_hat, p_hat)`` of float images ``images`` in [0, 1] (CPU in, CPU out), z sampled with ``seed``."""
        dev, gen = self.device, generator(seed, self.device)
        model.eval()
        x_hats, p_hats = [], []
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size].to(dev).contiguous(memory_format=torch.channels_last)
            with autocast(dev):
                x_hat, p_hat, _ = model(x, labels[start:start + batch_size].to(dev), gen)
            x_hats.append(x_hat.float().cpu())
            p_hats.append(None if p_hat is None else p_hat.float().cpu())
        return torch.cat(x_hats), (None if p_hats[0] is None else torch.cat(p_hats))


@PURIFIERS.register("vae", "reconstructions of a VAE with a KL limit (D-VAE paper eq. 3)")
class VAEPurifier(_VAEPurifierBase):
    """Train a rate-constrained VAE (eq. 3) on the training set; purify by reconstructing.

    Args:
        kld_limit: the KL limit (nats per latent position, summed over channels). Small limits
            remove more of the perturbation and more of the image (the paper's Fig. (a), (b)).
        epochs, batch_size, lr: Adam with a cosine schedule (60, 128, 5e-3).
        kl_weight: lambda of eq. 3 (0.01). width, latent_channels: the network (1.0, 256).
        seed: seeds the initialization, batches and latent samples. device: where it runs.
        cache_dir: folder where trained models are kept, keyed by every parameter and the
            training set's fingerprint (a rerun reuses them; an interrupted one resumes).
        progress: show a progress bar per training stage.
    """

    def __init__(self, kld_limit: float = 3.0, epochs: int = 60, batch_size: int = 128, lr: float = 5e-3,
                 kl_weight: float = 0.01, width: float = 1.0, latent_channels: int = 256, seed: int = 0,
                 device: str = "auto", cache_dir: str | None = None, progress: bool = True):
        check_float("kld_limit", kld_limit, 0.0, 1e6)
        self._check_common(epochs, batch_size, lr, kl_weight, latent_channels, width, seed, cache_dir)
        self.params = {"kld_limit": kld_limit, "epochs": epochs, "batch_size": batch_size, "lr": lr,
                       "kl_weight": kl_weight, "width": width, "latent_channels": latent_channels, "seed": seed,
                       "cache_dir": None if cache_dir is None else str(cache_dir)}
        self.device, self.progress = pick_device(device), progress
        self.model: RateConstrainedVAE | None = None
        self.history: dict[str, list[dict]] = {}

    def fit(self, train_set: ImageDataset) -> "VAEPurifier":
        self.model = self._train(train_set, self.params["kld_limit"], "vae")
        return self

    def purify(self, dataset: ImageDataset) -> ImageDataset:
        if self.model is None:
            raise ValueError("vae: call fit(train_set) (or apply) before purify")
        x_hat, _ = self._infer(self.model, dataset.images.float() / 255, dataset.labels, self.params["seed"])
        return dataset.with_images(to_uint8(x_hat), source=f"{dataset.source}, VAE-purified")


@PURIFIERS.register("dvae", "two-stage purification with a disentangling VAE (D-VAE paper eq. 14, Alg. 1)")
class DisentanglingVAEPurifier(_VAEPurifierBase):
    """Alg. 1: stage 1 (limit ``kld_limits[0]``) removes its ``p_hat``; stage 2 (``kld_limits[1]``), trained
    on the result, removes its ``p_hat`` and reconstructs.

    ``ablation`` selects a row of Table 7: ``no_stage1`` (1: only stage 2, trained on P0),
    ``no_i2`` (2: stage 2 reconstructs P1 without subtracting its p_hat), ``no_stage2`` (3: P1),
    ``no_i3`` (4: P2, no final reconstruction), ``stage1_reconstruct`` (5: stage 1's
    reconstruction of P1); ``none`` is the full method. Other arguments as for ``vae``.
    """

    disentangle = True

    def __init__(self, kld_limits: tuple[float, float] = (1.0, 3.0), epochs: int = 60, batch_size: int = 128,
                 lr: float = 5e-3, kl_weight: float = 0.01, width: float = 1.0, latent_channels: int = 256,
                 ablation: str = "none", seed: int = 0, device: str = "auto", cache_dir: str | None = None,
                 progress: bool = True):
        if not isinstance(kld_limits, (tuple, list)) or len(kld_limits) != 2:
            raise ValueError(f"kld_limits must be two numbers (stage 1, stage 2), got {kld_limits!r}")
        for limit in kld_limits:
            check_float("kld_limits", limit, 0.0, 1e6)
        check_choice("ablation", ablation, ABLATIONS)
        self._check_common(epochs, batch_size, lr, kl_weight, latent_channels, width, seed, cache_dir)
        self.params = {"kld_limits": [float(v) for v in kld_limits], "epochs": epochs, "batch_size": batch_size,
                       "lr": lr, "kl_weight": kl_weight, "width": width, "latent_channels": latent_channels,
                       "ablation": ablation, "seed": seed, "cache_dir": None if cache_dir is None else str(cache_dir)}
        self.device, self.progress = pick_device(device), progress
        self.models: dict[str, RateConstrainedVAE] = {}
        self.history: dict[str, list[dict]] = {}

    def _subtract(self, stage: str, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _, p_hat = self._infer(self.models[stage], images, labels, self.params["seed"])
        return (images - p_hat).clamp(0, 1)

    def fit(self, train_set: ImageDataset) -> "DisentanglingVAEPurifier":
        limit1, limit2 = self.params["kld_limits"]
        ablation = self.params["ablation"]
        self.models = {}
        if ablation == "no_stage1":
            self.models["stage2"] = self._train(train_set, limit2, "stage2")
            return self
        self.models["stage1"] = self._train(train_set, limit1, "stage1")
        if ablation not in ("no_stage2", "stage1_reconstruct"):
            first = self._subtract("stage1", train_set.images.float() / 255, train_set.labels)
            self.models["stage2"] = self._train(train_set.with_images(to_uint8(first)), limit2, "stage2")
        return self

    def perturbation(self, dataset: ImageDataset, stage: str = "stage1") -> torch.Tensor:
        """``p_hat`` of ``stage``'s model for every image of ``dataset`` (float, [0, 1] pixel scale):
        the D-VAE's estimate of each image's perturbation (the paper's Table 1 check)."""
        if stage not in self.models:
            raise ValueError(f"stage must be one of the fitted stages {sorted(self.models)}, got {stage!r}")
        return self._infer(self.models[stage], dataset.images.float() / 255, dataset.labels, self.params["seed"])[1]

    def purify(self, dataset: ImageDataset) -> ImageDataset:
        if not self.models:
            raise ValueError("dvae: call fit(train_set) (or apply) before purify")
        ablation, seed, labels = self.params["ablation"], self.params["seed"], dataset.labels
        x = dataset.images.float() / 255
        if ablation != "no_stage1":
            x = to_uint8(self._subtract("stage1", x, labels)).float() / 255          # P1, stored in 8 bits
            if ablation == "no_stage2":
                return dataset.with_images(to_uint8(x), source=f"{dataset.source}, D-VAE stage 1")
            if ablation == "stage1_reconstruct":
                x_hat, _ = self._infer(self.models["stage1"], x, labels, seed)
                return dataset.with_images(to_uint8(x_hat), source=f"{dataset.source}, D-VAE stage 1 + reconstruction")
        if ablation != "no_i2":
            x = self._subtract("stage2", x, labels)                                 # P2
        if ablation == "no_i3":
            return dataset.with_images(to_uint8(x), source=f"{dataset.source}, D-VAE without i3")
        x_hat, _ = self._infer(self.models["stage2"], x, labels, seed)              # P3
        return dataset.with_images(to_uint8(x_hat), source=f"{dataset.source}, D-VAE-purified")
