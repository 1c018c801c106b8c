"""What the study costs, read off the ``wall_s`` and ``device`` columns of the results tables.

* :func:`generation_costs`: hours to make each poison (rows of metric ``generation_h``), beside
  the papers' reported hours (REM Table 6, SEM Table 15) where the row carries them;
* :func:`defense_costs`: seconds to train under each defense on clean data, and that time as a
  multiple of ordinary training in the same notebook (same data, model and budget), so the
  ratio is comparable across notebooks and devices;
* :func:`notebook_costs`: the wall time, profile and device of every published run.

A row's ``wall_s`` is what its cell cost: for clean data that is training only, which is why
the defense costs use clean rows. A purification's own time is not in the rows yet.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .runtime import REPO_ROOT


def generation_costs(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per measured generation: method, notebook, profile, device, hours (ours and the paper's)."""
    made = rows[rows.metric == "generation_h"]
    frame = pd.DataFrame({"method": made.attack, "notebook": made.experiment, "profile": made.profile,
                          "device": made.device, "hours": made.value.astype(float),
                          "paper hours": made.paper_value.astype(float),
                          "paper table": (made.paper.str.upper() + " " + made.table.fillna("")).str.strip()})
    frame.loc[frame["paper hours"].isna(), "paper table"] = ""
    return frame.sort_values(["method", "notebook"]).reset_index(drop=True)


def defense_costs(rows: pd.DataFrame) -> pd.DataFrame:
    """Per defense: median training seconds on clean data and the median multiple of ordinary training.

    Only notebooks that also trained without a defense (``defense == "none"``) on clean data give
    a multiple; ``notebooks`` counts those that measured the defense at all.
    """
    clean = rows[(rows.attack == "clean") & (rows.metric == "test_acc")]
    lines = []
    for (experiment, profile, device), group in clean.groupby(["experiment", "profile", "device"]):
        plain = group[group.defense == "none"].wall_s.median()
        for defense, runs in group.groupby("defense"):
            seconds = runs.wall_s.median()
            lines.append({"defense": defense, "notebook": experiment, "profile": profile, "device": device,
                          "seconds": seconds, "multiple": seconds / plain if plain and plain > 0 else float("nan")})
    if not lines:
        return pd.DataFrame(columns=["defense", "notebooks", "profile", "device", "median seconds",
                                     "x ordinary training"])
    measured = pd.DataFrame(lines)
    summary = measured.groupby(["defense", "profile", "device"]).agg(
        notebooks=("notebook", "nunique"), seconds=("seconds", "median"), multiple=("multiple", "median"))
    summary = summary.reset_index().rename(columns={"seconds": "median seconds", "multiple": "x ordinary training"})
    summary["median seconds"] = summary["median seconds"].round(1)
    summary["x ordinary training"] = summary["x ordinary training"].round(2)
    return summary.sort_values(["x ordinary training", "defense"]).reset_index(drop=True)[
        ["defense", "notebooks", "profile", "device", "median seconds", "x ordinary training"]]


def notebook_costs(runs: str | Path | None = None) -> pd.DataFrame:
    """Every executed notebook in ``runs`` (default ``book/runs``): profile, device, wall time, commit."""
    lines = []
    for path in sorted(Path(runs or REPO_ROOT / "book" / "runs").glob("[!.]*.ipynb")):  # not runs in progress
        record = json.loads(path.read_text()).get("metadata", {}).get("uex", {})
        wall = record.get("wall_s")
        lines.append({"notebook": path.stem, "profile": record.get("profile", ""), "device": record.get("device", ""),
                      "minutes": round(wall / 60, 1) if isinstance(wall, (int, float)) else float("nan"),
                      "commit": str(record.get("git_commit", ""))[:10]})
    return pd.DataFrame(lines, columns=["notebook", "profile", "device", "minutes", "commit"])
