"""Where each table of the five source papers stands, read off the results tables.

Every paper table (one CSV in ``data/paper_tables``) gets one line: the best profile among the
rows of ``book/results/*.csv`` that name it (``paper`` > ``gpu`` > ``lab``; ``smoke`` rows never
count), how many of our numbers sit beside one of the paper's, which notebooks produce it, and
what it still needs, from ``data/reproduction_plan.csv`` (hand-kept: the one place that says what
is missing and why). ``uex status`` writes the book's "Reproduction status" page from it, and
``uex book`` rewrites that page before every build, so the page is never older than the results.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .results import RESULT_PROFILES, load_results
from .runtime import REPO_ROOT, atomic_path

PAPERS = {"thesis": "Berns, thesis (2021)", "rem": "REM, Fu et al. (2022)", "sem": "SEM, Liu et al. (2024)",
          "st": "Staged training, Dang et al. (2023)", "dvae": "D-VAE, Yu et al. (2024)"}
STATUS = {"paper": "reproduced (paper scale)", "gpu": "gpu scale", "lab": "lab scale"}


def _table_of(file_name: str) -> tuple[str, str]:
    """``"000_rem_table10.csv"`` -> ``("rem", "Table 10")``; thesis ``table3_1`` -> ``"Table 3.1"``."""
    match = re.fullmatch(r"\d+_([a-z]+)_table(\d+(?:_\d+)?)\.csv", file_name)
    if match is None:
        raise ValueError(f"paper table file {file_name!r} is not named <n>_<paper>_table<k>.csv")
    return match.group(1), "Table " + match.group(2).replace("_", ".")


def _table_key(table: str) -> tuple:
    return tuple(int(part) for part in table.split()[-1].split("."))


def reproduction_status(results_dir: Path = REPO_ROOT / "book" / "results",
                        tables_dir: Path = REPO_ROOT / "data" / "paper_tables",
                        plan: Path = REPO_ROOT / "data" / "reproduction_plan.csv") -> pd.DataFrame:
    """One row per paper table: paper, table, caption, cells, status, compared, notebooks, needs."""
    results = load_results(results_dir, RESULT_PROFILES)
    planned = pd.read_csv(plan, dtype=str, keep_default_na=False).set_index(["paper", "table"])
    lines = []
    for path in sorted(Path(tables_dir).glob("*.csv")):
        paper, table = _table_of(path.name)
        cells = pd.read_csv(path)
        if (paper, table) not in planned.index:
            raise ValueError(f"{plan} has no line for {paper} {table}; add one (notebooks, needs)")
        notebooks, needs = planned.loc[(paper, table), ["notebooks", "needs"]]
        needs = needs or "a paper-scale run on a GPU"
        ours = results[(results.paper == paper) & (results.table == table)]
        best = next((p for p in RESULT_PROFILES if (ours.profile == p).any()), None)
        if best is None:
            status = "not yet run" if notebooks else "waiting"
            compared = 0
        else:
            status = STATUS[best]
            if best == "paper" and needs == "a paper-scale run on a GPU":
                needs = ""
            compared = int(ours[ours.profile == best].paper_value.notna().sum())
        lines.append({"paper": paper, "table": table, "caption": str(cells.caption_short.iloc[0]),
                      "cells": len(cells), "status": status, "compared": compared, "notebooks": notebooks,
                      "needs": needs})
    unknown = set(planned.index) - {(line["paper"], line["table"]) for line in lines}
    if unknown:
        raise ValueError(f"{plan} names tables that do not exist: {sorted(unknown)}")
    order = {tag: i for i, tag in enumerate(PAPERS)}
    frame = pd.DataFrame(lines)
    frame["_order"] = [(order.get(p, len(order)), _table_key(t)) for p, t in zip(frame.paper, frame.table)]
    return frame.sort_values("_order").drop(columns="_order").reset_index(drop=True)


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(status: pd.DataFrame) -> str:
    """The "Reproduction status" page: a summary line and one table per paper."""
    counts = status.status.value_counts()
    summary = ", ".join(f"{counts[s]} {s}" for s in (*STATUS.values(), "not yet run", "waiting") if s in counts)
    out = ["# Reproduction status", "",
           "% Written by `uex status` (uexlib.status) from book/results and data/reproduction_plan.csv; do not edit.",
           "",
           f"Every numeric table of the five source papers, {len(status)} in all: {summary}. A table's",
           "status is the best profile among the results rows that name it; only *paper scale* is a",
           "reproduction. *compared* counts our numbers printed beside one of the paper's *cells*;",
           "*still needed* says what the rest of the table waits for (a notebook, a method, a dataset",
           "or a GPU). *Not yet run* means its notebook is written but has no published run.", ""]
    for paper, title in PAPERS.items():
        rows = status[status.paper == paper]
        if rows.empty:
            continue
        out += [f"## {title}", "", "| table | caption | status | compared / cells | notebooks | still needed |",
                "| --- | --- | --- | --- | --- | --- |"]
        for row in rows.itertuples():
            notebooks = ", ".join(f"`{n}`" for n in row.notebooks.split()) or "none"
            out.append(f"| {row.table} | {_cell(row.caption)} | {row.status} | {row.compared} / {row.cells} | "
                       f"{notebooks} | {_cell(row.needs) or 'nothing'} |")
        out.append("")
    return "\n".join(out)


def write_page(project: Path = REPO_ROOT) -> Path:
    """Write ``project``'s status page (``book/reproduction_status.md``) atomically from its results."""
    project = Path(project)
    status = reproduction_status(project / "book" / "results", project / "data" / "paper_tables",
                                 project / "data" / "reproduction_plan.csv")
    path = project / "book" / "reproduction_status.md"
    with atomic_path(path) as tmp:
        tmp.write_text(markdown(status))
    return path
