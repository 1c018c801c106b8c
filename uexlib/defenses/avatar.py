"""AVATAR: diffusion purification (Dolatabadi, Erfani and Leckie, "The Devil's Advocate: Shattering the
Illusion of Unexploitable Data using Diffusion Models", 2023), the D-VAE paper's "AVA." column.

A denoising diffusion model (DDPM, Ho et al. 2020) learns clean images from data the defender
trusts. Each poisoned image is then diffused to an intermediate time ``t*``,
``x_t* = sqrt(abar_t*) x + sqrt(1 - abar_t*) eps``, which drowns the small perturbation in
Gaussian noise, and denoised back to ``t = 0`` by the reverse process; what comes back is the
image's content as the clean model knows it. Images enter the model on [-1, 1] ((x - 0.5) * 2).

The D-VAE paper's point about AVATAR is that it needs clean data (its Table 6). Here the clean
data are the training-split images *outside* the poisoned set (the rest of CIFAR-10 when the
poison covers a subset); a poison that covers the whole split leaves none, and ``fit`` says so.
The diffusion model is small (a two-level U-Net), trained from scratch with Adam; the authors use
a large pretrained score model, which CPU profiles cannot afford, so AVATAR belongs to the GPU
profiles. Linear beta schedule 1e-4 to 0.02 over 1,000 steps; ``t* = 100`` (0.1 of the process,
DiffPure's choice for CIFAR-10, which AVATAR follows); ancestral sampling with variance beta_t.

Two cost choices, both off by default, let a CPU profile run it. ``train_max_step`` trains the
noise predictor only on the steps purification visits (``t < train_max_step``, set to ``t* + 1``):
DDPM's objective draws ``t`` over the whole process, of which purification uses a tenth.
``sample_steps`` denoises on an evenly spaced subsequence of ``t*, ..., 0`` instead of every step:
the respaced process of Nichol and Dhariwal ("Improved DDPM", 2021, Sec. 4), whose betas
``1 - abar_t / abar_s`` between consecutive kept steps ``t > s`` give back the original process
when every step is kept.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import autocast
from ..data import ImageDataset, load_dataset, subset_per_class
from ..models.layers import scale_channels
from ..runtime import check_float, check_int, generator
from ..runtime import device as pick_device
from . import PURIFIERS
from .base import Purifier, to_uint8
from .generative import train_generative


def _timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class _ResBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, embed: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(8, channels_in), nn.Conv2d(channels_in, channels_out, 3, padding=1)
        self.time = nn.Linear(embed, channels_out)
        self.norm2, self.conv2 = nn.GroupNorm(8, channels_out), nn.Conv2d(channels_out, channels_out, 3, padding=1)
        self.skip = nn.Conv2d(channels_in, channels_out, 1) if channels_in != channels_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.time(emb)[:, :, None, None]
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class SmallUNet(nn.Module):
    """A two-level U-Net predicting the noise ``eps`` of ``x_t`` at step ``t`` (sizes divisible by 4)."""

    def __init__(self, channels: int = 3, width: float = 1.0):
        super().__init__()
        c = scale_channels(64, width, minimum=8)
        self.embed_dim = 4 * c
        self.embed = nn.Sequential(nn.Linear(c, self.embed_dim), nn.SiLU(), nn.Linear(self.embed_dim, self.embed_dim))
        self.base = c
        self.inp = nn.Conv2d(channels, c, 3, padding=1)
        self.down1, self.down2 = _ResBlock(c, c, self.embed_dim), _ResBlock(c, 2 * c, self.embed_dim)
        self.mid = _ResBlock(2 * c, 2 * c, self.embed_dim)
        self.up2, self.up1 = _ResBlock(4 * c, 2 * c, self.embed_dim), _ResBlock(3 * c, c, self.embed_dim)
        self.out = nn.Sequential(nn.GroupNorm(8, c), nn.SiLU(), nn.Conv2d(c, channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.embed(_timestep_embedding(t, self.base))
        h1 = self.down1(self.inp(x), emb)                                  # full resolution
        h2 = self.down2(F.avg_pool2d(h1, 2), emb)                          # 1/2
        mid = self.mid(F.avg_pool2d(h2, 2), emb)                           # 1/4
        u2 = self.up2(torch.cat([F.interpolate(mid, scale_factor=2.0), h2], 1), emb)
        u1 = self.up1(torch.cat([F.interpolate(u2, scale_factor=2.0), h1], 1), emb)
        return self.out(u1)


@PURIFIERS.register("avatar", "diffuse to t*, then denoise with a DDPM trained on clean held-out images (AVATAR)")
class DiffusionPurifier(Purifier):
    """AVATAR with a small DDPM trained on clean training-split images outside the poisoned set.

    Args:
        t_star: the diffusion step each image is noised to and denoised from (100 of ``steps``).
        steps: length of the diffusion process (1,000, linear betas 1e-4 to 0.02).
        sample_steps: reverse steps from ``t_star`` to 0 on the respaced process (None: all ``t_star + 1``).
        train_max_step: the DDPM learns steps ``0 .. train_max_step - 1`` only (None: all ``steps``);
            at least ``t_star + 1``, the steps purification visits.
        clean_per_class: held-out clean images per class the DDPM learns from (None: all there are).
        epochs, batch_size, lr: the DDPM's Adam training (100, 128, 2e-4).
        width: the U-Net's channel multiplier (1.0: 64 base channels).
        root: the dataset root of the held-out images ("" : $UEX_DATA_ROOT).
        seed, device, cache_dir, progress: as for ``vae``.
    """

    def __init__(self, t_star: int = 100, steps: int = 1000, sample_steps: int | None = None,
                 train_max_step: int | None = None, clean_per_class: int | None = None, epochs: int = 100,
                 batch_size: int = 128, lr: float = 2e-4, width: float = 1.0, root: str = "", seed: int = 0,
                 device: str = "auto", cache_dir: str | None = None, progress: bool = True):
        check_int("steps", steps, low=2)
        check_int("t_star", t_star, low=1, high=steps - 1)
        if sample_steps is not None:
            check_int("sample_steps", sample_steps, low=1, high=t_star + 1)
        if train_max_step is not None:
            check_int("train_max_step", train_max_step, low=t_star + 1, high=steps)
        if clean_per_class is not None:
            check_int("clean_per_class", clean_per_class, low=1)
        check_int("epochs", epochs, low=1)
        check_int("batch_size", batch_size, low=1)
        check_float("lr", lr, 0.0, 1.0, low_open=True)
        check_float("width", width, 0.0, 8.0, low_open=True)
        check_int("seed", seed, low=0)
        self.params = {"t_star": t_star, "steps": steps, "sample_steps": sample_steps,
                       "train_max_step": train_max_step, "clean_per_class": clean_per_class, "epochs": epochs,
                       "batch_size": batch_size, "lr": lr, "width": width, "root": root, "seed": seed,
                       "cache_dir": None if cache_dir is None else str(cache_dir)}
        self.device, self.progress = pick_device(device), progress
        # On the device once: the training step indexes them every batch.
        betas = torch.linspace(1e-4, 0.02, steps, dtype=torch.float64, device=self.device)
        self.alpha_bars = torch.cumprod(1 - betas, 0)
        self.model: SmallUNet | None = None
        self.history: dict[str, list[dict]] = {}

    def held_out(self, train_set: ImageDataset) -> ImageDataset:
        """Clean images of ``train_set``'s split that are not in it, ``clean_per_class`` of each class."""
        full = load_dataset(train_set.name, train_set.split, self.params["root"] or None)
        rest = torch.ones(len(full), dtype=torch.bool)
        rest[train_set.indices] = False
        clean = full.take(rest.nonzero().flatten())
        if len(clean) == 0 or len(clean.labels.unique()) < train_set.num_classes:
            raise ValueError(f"avatar needs clean {train_set.name} images outside the poisoned set, and the poison "
                             f"covers the {train_set.split} split; poison a subset (per_class) to leave some out")
        per_class = self.params["clean_per_class"]
        if per_class is not None:
            clean = subset_per_class(clean, min(per_class, int(torch.bincount(clean.labels).min())),
                                     self.params["seed"])
        return clean

    def _loss(self, model: SmallUNet, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple:
        x = (x - 0.5) * 2
        t = torch.randint(0, self.params["train_max_step"] or self.params["steps"], (len(x),), device=x.device, generator=gen)
        noise = torch.randn(x.shape, device=x.device, generator=gen)
        abar = self.alpha_bars[t].float()[:, None, None, None]
        with autocast(x.device):
            predicted = model(abar.sqrt() * x + (1 - abar).sqrt() * noise, t)
        loss = F.mse_loss(predicted.float(), noise)
        return loss, {"mse": loss.detach()}

    def unavailable(self, train_set: ImageDataset) -> str | None:
        """The reason :meth:`held_out` gives when ``train_set`` leaves no clean images, or None."""
        try:
            self.held_out(train_set)
        except ValueError as error:
            return str(error)
        return None

    def fit(self, train_set: ImageDataset) -> "DiffusionPurifier":
        p = self.params
        clean = self.held_out(train_set)
        torch.manual_seed(p["seed"])
        model = SmallUNet(train_set.images.shape[1], p["width"]).to(self.device)
        self.model = train_generative(
            model, clean, self._loss, stage="ddpm",
            key_params={k: v for k, v in p.items() if k not in ("cache_dir", "t_star", "sample_steps")},
            cache_dir=p["cache_dir"], epochs=p["epochs"], batch_size=p["batch_size"], lr=p["lr"], seed=p["seed"],
            device=self.device, history=self.history, progress=self.progress, name="avatar")
        return self

    def reverse_schedule(self) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        """The kept steps ``t* = tau_0 > ... > tau_last = 0``, their ``abar`` and the betas of the
        respaced process, ``1 - abar_tau_i / abar_tau_(i+1)`` (``abar`` after the last step is 1):
        ``beta_t`` itself when every step is kept."""
        p = self.params
        kept = torch.linspace(p["t_star"], 0, p["sample_steps"] or p["t_star"] + 1).round().long().unique_consecutive()
        abar_kept = self.alpha_bars[kept.to(self.device)].float()
        abar_next = torch.cat([abar_kept[1:], torch.ones(1, device=self.device)])
        return kept.tolist(), abar_kept, 1 - abar_kept / abar_next

    @torch.no_grad()
    def purify(self, dataset: ImageDataset, batch_size: int = 500) -> ImageDataset:
        if self.model is None:
            raise ValueError("avatar: call fit(train_set) (or apply) before purify")
        p, dev = self.params, self.device
        gen = generator(p["seed"], dev)
        kept, abar_kept, betas = self.reverse_schedule()
        out = torch.empty_like(dataset.images)
        self.model.eval()
        for start in range(0, len(dataset), batch_size):
            x = (dataset.images[start:start + batch_size].to(dev).float() / 255 - 0.5) * 2
            x = abar_kept[0].sqrt() * x + (1 - abar_kept[0]).sqrt() * torch.randn(x.shape, device=dev, generator=gen)
            for i, t in enumerate(kept):
                step = torch.full((len(x),), t, device=dev, dtype=torch.long)
                with autocast(dev):
                    eps = self.model(x, step).float()
                beta = betas[i]
                x = (x - beta / (1 - abar_kept[i]).sqrt() * eps) / (1 - beta).sqrt()
                if i < len(kept) - 1:
                    x = x + beta.sqrt() * torch.randn(x.shape, device=dev, generator=gen)
            out[start:start + batch_size] = to_uint8((x / 2 + 0.5).cpu())
        return dataset.with_images(out, source=f"{dataset.source}, AVATAR-purified")
