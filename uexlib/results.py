"""Tidy results with provenance: one CSV row per measured cell, the contract between notebooks and book."""
from __future__ import annotations

import os
import platform
from datetime import datetime, timezone

import pandas as pd
import torch

from .runtime import VERSION, atomic_path, git_commit


def provenance(profile: str, seed: int) -> dict:
    """Columns every results row carries: profile, seed, library version, commit, device, time."""
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({platform.processor() or 'x86_64'}, {torch.get_num_threads()} threads)"
    return {"profile": profile, "seed": seed, "uexlib_version": VERSION, "git_commit": git_commit(),
            "device": dev, "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def write_csv(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write ``frame`` to ``path`` atomically (no half-written CSV after a crash)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
