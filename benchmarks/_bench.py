"""What every benchmark row carries, and the append-only CSV both benchmarks write to."""
from __future__ import annotations

import csv
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def device_label(dev: torch.device) -> str:
    """The CUDA device's name, or the CPU as every uexlib provenance record names it."""
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu ({platform.processor() or 'x86_64'}, {torch.get_num_threads()} threads)"


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def sync(dev: torch.device) -> None:
    """Wait for queued device work, so a wall clock read afterwards covers it."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def append_rows(path: str | os.PathLike, columns: list[str], rows: list[dict]) -> None:
    """Append ``rows`` to the CSV at ``path``, writing the header first if the file is new.

    Rows accumulate across runs and machines; a file whose header differs is refused rather
    than silently mixed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file() or path.stat().st_size == 0
    if not new:
        with path.open(newline="") as handle:
            header = next(csv.reader(handle), [])
        if header != columns:
            raise ValueError(f"{path} has columns {header}, expected {columns}; pass another --out")
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        if new:
            writer.writeheader()
        writer.writerows(rows)
