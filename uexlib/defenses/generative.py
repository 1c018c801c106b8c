"""One training loop for the generative models that purifiers fit (VAE, D-VAE, AVATAR's DDPM).

Adam with a per-epoch cosine schedule to zero, gradient-norm clip, no augmentation, a seeded
generator for the model's own noise, a progress bar, and a cache: with ``cache_dir`` a finished
model is stored under a key of its settings and training set (and reused by a rerun), and an
unfinished one is checkpointed every epoch (and resumed).
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data import DeviceLoader, ImageDataset
from ..runtime import atomic_torch_save, generator

# loss_fn(model, x, y, gen) -> (loss, {metric: detached tensor})
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], tuple]


def cache_key(stage: str, params: dict, train_set: ImageDataset) -> str:
    blob = json.dumps({"stage": stage, "params": params, "train": train_set.fingerprint()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def train_generative(model: nn.Module, data: ImageDataset, loss_fn: LossFn, *, stage: str, key_params: dict,
                     cache_dir: str | None, epochs: int, batch_size: int, lr: float, seed: int,
                     device: torch.device, history: dict, progress: bool, name: str,
                     clip: float = 5.0) -> nn.Module:
    """Train ``model`` (already on ``device``) on ``data``; append one row per epoch to ``history[stage]``
    (the mean ``loss`` and each metric of ``loss_fn``); return it in eval mode."""
    final = Path(cache_dir) / f"{name}_{stage}_{cache_key(stage, key_params, data)}.pt" if cache_dir else None
    partial = final.with_suffix(".partial.pt") if final is not None else None
    if final is not None and final.is_file():
        model.load_state_dict(torch.load(final, map_location=device, weights_only=True))
        return model.eval()
    loader = DeviceLoader(data, min(batch_size, len(data)), device, shuffle=True, seed=seed, drop_last=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    start, history[stage] = 0, []
    if partial is not None and partial.is_file():
        state = torch.load(partial, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, history[stage] = state["epoch"] + 1, state["history"]
    gen = generator(seed + 1, device)
    bar = tqdm(range(start, epochs), desc=f"{name} {stage}", disable=not progress, leave=False)
    for epoch in bar:
        gen.manual_seed(seed * 1_000_003 + epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
        loader.set_epoch(epoch)
        model.train()
        sums: dict[str, torch.Tensor] = {}
        for x, y, _ in loader:
            loss, metrics = loss_fn(model, x, y, gen)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            for key, value in {"loss": loss.detach(), **metrics}.items():
                sums[key] = sums.get(key, 0) + value
        row = {key: float(value) / len(loader) for key, value in sums.items()}
        history[stage].append({**row, "epoch": epoch})
        bar.set_postfix({k: f"{v:.4f}" for k, v in row.items()})
        if partial is not None:
            atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                               "history": history[stage]}, partial)
    if final is not None:
        atomic_torch_save(model.state_dict(), final)
        partial.unlink(missing_ok=True)
    return model.eval()
