"""Tidy results with provenance: one CSV row per measured cell, the contract between notebooks and book."""
from __future__ import annotations

import hashlib

import os
import platform
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch

from .runtime import CODE_COMMIT, REPO_ROOT, VERSION, atomic_path


def device_name() -> str:
    """The GPU's name, or ``cpu (<processor>, <threads> threads)``: the ``device`` of every provenance record."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"cpu ({platform.processor() or 'x86_64'}, {torch.get_num_threads()} threads)"


def provenance(profile: str, seed: int) -> dict:
    """Columns every results row carries: profile, seed, library version, commit, device, time."""
    return {"profile": profile, "seed": seed, "uexlib_version": VERSION, "git_commit": CODE_COMMIT,
            "device": device_name(), "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def write_csv(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write ``frame`` to ``path`` atomically (no half-written CSV after a crash)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


# The one schema of every results table (../shared/RESULTS.md), in column order.
SCHEMA = ("experiment", "paper", "table", "dataset", "data_source", "model", "attack", "attack_params", "defense",
          "defense_params", "poison_ratio", "metric", "value", "paper_value", "profile", "seed", "wall_s", "device",
          "git_commit")
PAPERS = ("rem", "sem", "thesis", "st", "dvae", "none")


def result_row(**fields) -> dict:
    """One measured cell in :data:`SCHEMA`; ``device`` and ``git_commit`` (the commit of the code this
    process imported, :data:`uexlib.runtime.CODE_COMMIT`) are filled in.

    ``attack_params`` / ``defense_params`` may be dicts (written as JSON, radii as floats on
    the [0, 1] scale); ``table`` and ``paper_value`` may be left out (empty).
    """
    import json

    unknown = sorted(set(fields) - set(SCHEMA))
    if unknown:
        raise ValueError(f"unknown results column(s) {unknown}; the schema is: {', '.join(SCHEMA)}")
    row = {"table": "", "paper_value": None, "device": device_name(), "git_commit": CODE_COMMIT, **fields}
    missing = [c for c in SCHEMA if c not in row]
    if missing:
        raise ValueError(f"results row lacks {', '.join(missing)}")
    if row["paper"] not in PAPERS:
        raise ValueError(f"paper must be one of {', '.join(PAPERS)}; got {row['paper']!r}")
    for key in ("attack_params", "defense_params"):
        if isinstance(row[key], dict):
            row[key] = json.dumps(row[key], sort_keys=True)
    return {c: row[c] for c in SCHEMA}


def results_dir() -> Path:
    """Where results tables go: ``$UEX_RESULTS_DIR`` (set by the book runner), else ``book/results``."""
    return Path(os.environ.get("UEX_RESULTS_DIR") or REPO_ROOT / "book" / "results")


def write_results(rows: list[dict], experiment: str, profile: str) -> Path:
    """Write ``rows`` (from :func:`result_row`) to ``<results_dir>/<experiment>_<profile>.csv`` atomically."""
    frame = pd.DataFrame(rows, columns=list(SCHEMA))
    if (frame.experiment != experiment).any() or (frame.profile != profile).any():
        raise ValueError(f"every row must have experiment {experiment!r} and profile {profile!r}")
    path = results_dir() / f"{experiment}_{profile}.csv"
    write_csv(frame, path)
    return path


def read_results(experiment: str, profile: str) -> pd.DataFrame:
    """The rows :func:`write_results` wrote for ``experiment`` at ``profile`` (none: an empty table)."""
    path = results_dir() / f"{experiment}_{profile}.csv"
    return pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=list(SCHEMA))


RESULT_PROFILES = ("paper", "gpu", "lab")  # profiles whose rows are results, best first; smoke never is


def load_results(folder: str | os.PathLike | None = None, profiles: tuple[str, ...] = RESULT_PROFILES
                 ) -> pd.DataFrame:
    """Every row of ``folder/*.csv`` (default the book's ``book/results``) whose profile is in ``profiles``.

    The default leaves ``smoke`` rows out: they are never a result.
    """
    folder = Path(folder) if folder else REPO_ROOT / "book" / "results"
    frames = [pd.read_csv(path) for path in sorted(folder.glob("*.csv"))]
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(SCHEMA))
    return rows[rows.profile.isin(profiles)].reset_index(drop=True)


def side_by_side(ours: pd.DataFrame, paper: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """Cells ``"ours (paper)"`` of two tables with the same index and columns, for the book.

    A missing paper value shows as ``-``; a cell with no value of ours stays empty.
    """
    paper = paper.reindex_like(ours)

    def cell(value, reference) -> str:
        if pd.isna(value):
            return ""
        shown = "-" if reference is None or pd.isna(reference) else f"{float(reference):.{digits}f}"
        return f"{float(value):.{digits}f} ({shown})"

    return pd.DataFrame([[cell(v, r) for v, r in zip(ours.loc[i], paper.loc[i])] for i in ours.index],
                        index=ours.index, columns=ours.columns)


def table(frame: pd.DataFrame | pd.Series, digits: int = 2):
    """``frame`` ready to show in the book: no row-number column, no ``NaN``, one header row.

    A meaningful index (named, or not a plain 0..n-1 range) becomes the first column(s); a plain
    range index is dropped; a Series becomes a two-column table (its index name, or ``""``, and
    its name, or ``value``). Missing cells show empty and floats with ``digits`` decimals. Returns a pandas
    Styler, which notebooks display or ``glue`` like a DataFrame.
    """
    if isinstance(frame, pd.Series):
        frame = frame.rename(frame.name or "value").to_frame()
        frame.index.name = frame.index.name or ""
    frame = frame.copy()
    if not (isinstance(frame.index, pd.RangeIndex) and frame.index.name is None):
        frame = frame.reset_index()
    frame.columns.name = None
    # The HTML's element ids come from the content, so showing the same table twice gives the
    # same bytes (and the book runner keeps one copy of it).
    uuid = hashlib.sha256(frame.to_json(default_handler=str).encode()).hexdigest()[:8]
    return (frame.style.hide(axis="index").format(na_rep="", precision=digits).set_uuid(uuid)
            .set_table_attributes('class="dataframe"'))
