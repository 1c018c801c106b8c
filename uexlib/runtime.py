"""One authority each for the compute device, seeding, provenance and atomic file writes."""
from __future__ import annotations

import contextlib
import hashlib
import os
import random
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

VERSION = "0.1.0"
REPO_ROOT = Path(__file__).resolve().parent.parent


def device(name: str = "auto") -> torch.device:
    """The compute device: ``"auto"`` picks CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    return torch.device(name)


def seed(value: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator seeded with ``value``."""
    check_int("seed", value, low=0)
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)
    return torch.Generator().manual_seed(value)


def generator(seed_value: int, dev: torch.device) -> torch.Generator:
    """A generator on ``dev`` so random draws for on-device batches never touch the host."""
    return torch.Generator(device=dev).manual_seed(seed_value)


def check_int(name: str, value, low: int | None = None, high: int | None = None) -> None:
    """Raise a ValueError naming ``name`` unless ``value`` is an int in [low, high]."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    ok = ok and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")


def check_float(name: str, value, low: float, high: float, low_open: bool = False, hint: str = "") -> None:
    """Raise a ValueError naming ``name`` unless ``value`` lies in (low, high] or [low, high]."""
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    ok = ok and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be in {bracket}{low}, {high}], got {value!r}{hint}")


def check_eps(value, name: str = "eps", high: float = 1.0, allow_zero: bool = False) -> None:
    """A radius on the [0, 1] pixel scale; a value in (1, 255] gets the hint "did you mean N/255?"."""
    hint = f" (did you mean {value:g}/255?)" if high <= 1 and isinstance(value, (int, float)) and 1 < value <= 255 else ""
    check_float(name, value, 0.0, high, low_open=not allow_zero, hint=hint)


def check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")


def git_commit() -> str:
    """The repository's HEAD commit (with ``+dirty`` when the tree has changes), or ``unknown``."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# The commit of the code this process imported: what produced every result and artifact it writes,
# even if the checkout moves on while it runs (a long notebook, a long generation).
CODE_COMMIT = git_commit()


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A crash or an exception leaves no half-written file behind under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def worker_environments(requested: int | None) -> list[dict]:
    """The environment of each local worker process that runs notebooks: one GPU each (at most as
    many workers as GPUs), or an equal share of the CPU cores (``requested`` workers, default half
    the cores)."""
    gpus = torch.cuda.device_count()
    if gpus:
        count = min(requested or gpus, gpus)
        return [{"CUDA_VISIBLE_DEVICES": str(i)} for i in range(count)]
    cores = os.cpu_count() or 1
    count = requested or max(1, cores // 2)
    threads = str(max(1, cores // count))
    return [{"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}] * count


def enter_worker_environment(env: dict) -> None:
    """Apply one of :func:`worker_environments` in the worker process itself: the notebook kernels it
    starts inherit ``env``, and this process's own torch (already imported, so deaf to a new
    ``OMP_NUM_THREADS``) takes the same thread count, which its provenance records report."""
    os.environ.update(env)
    if "OMP_NUM_THREADS" in env:
        torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
