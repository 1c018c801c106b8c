"""Tidy results with provenance: one CSV row per measured cell, the contract between notebooks and book."""
from __future__ import annotations

import os
import platform
from datetime import datetime, timezone

import pandas as pd
import torch

from .runtime import VERSION, atomic_path, git_commit


def device_name() -> str:
    """The GPU's name, or ``cpu (<processor>, <threads> threads)``: the ``device`` of every provenance record."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"cpu ({platform.processor() or 'x86_64'}, {torch.get_num_threads()} threads)"


def provenance(profile: str, seed: int) -> dict:
    """Columns every results row carries: profile, seed, library version, commit, device, time."""
    return {"profile": profile, "seed": seed, "uexlib_version": VERSION, "git_commit": git_commit(),
            "device": device_name(), "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def write_csv(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write ``frame`` to ``path`` atomically (no half-written CSV after a crash)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
