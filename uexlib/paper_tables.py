"""The source papers' tables, transcribed as tidy CSV in ``data/paper_tables`` (one row per cell)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .runtime import REPO_ROOT

FOLDER = REPO_ROOT / "data" / "paper_tables"


def path(name: str) -> Path:
    """The CSV file ``name`` (e.g. ``"002_thesis_table3_3.csv"``); unknown names list the choices."""
    file = FOLDER / name
    if not file.is_file():
        choices = ", ".join(sorted(p.name for p in FOLDER.glob("*.csv")))
        raise KeyError(f"unknown paper table {name!r}; available: {choices}")
    return file


def load(name: str) -> pd.DataFrame:
    return pd.read_csv(path(name))
