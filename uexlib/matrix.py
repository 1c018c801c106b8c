"""The grand matrix: every poison against every defense, assembled from all notebooks' results rows.

A results row fills the cell (attack, defense) when it measured exactly that cell at the
matrix's settings: the same profile and model, CIFAR-10, clean test accuracy, the whole training
set poisoned (or none of it for the ``clean`` row), and attack and defense parameters that agree
with the matrix's on every parameter the row records (a matrix parameter of ``None``, "the
generator's own default", accepts any recorded value), and the victim trained with the standard
augmentation (a row whose defense parameters record another ``augment`` measured something else). Several matching rows (from several
notebooks) give their median; the table says how many there were and which notebooks wrote them.
"""
from __future__ import annotations

import json
import math

import pandas as pd

CELL_COLUMNS = ["attack", "defense", "value", "paper_value", "rows", "notebooks"]


def _agrees(recorded, canonical) -> bool:
    if canonical is None:
        return True
    if isinstance(recorded, (int, float)) and isinstance(canonical, (int, float)) \
            and not isinstance(recorded, bool) and not isinstance(canonical, bool):
        return math.isclose(float(recorded), float(canonical), rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(recorded, (list, tuple)) and isinstance(canonical, (list, tuple)):
        return len(recorded) == len(canonical) and all(_agrees(r, c) for r, c in zip(recorded, canonical))
    if isinstance(recorded, dict) and isinstance(canonical, dict):
        return matches(recorded, canonical)
    return recorded == canonical


def matches(recorded: dict, canonical: dict) -> bool:
    """True when every parameter in ``recorded`` that ``canonical`` has agrees with it.

    A recorded key that is not a parameter at all (a row may note the norm, which follows from the
    generator) says nothing about the settings and is not compared.
    """
    return all(key not in canonical or _agrees(value, canonical[key]) for key, value in recorded.items())


def _params(text) -> dict:
    if isinstance(text, dict):
        return text
    if not isinstance(text, str) or not text.strip():
        return {}
    return json.loads(text)


def cells(rows: pd.DataFrame, profile: str, model: str, attacks: dict[str, dict], defenses: dict[str, dict],
          dataset: str = "cifar10", data_source: str | None = None, augment: str = "crop_flip") -> pd.DataFrame:
    """One line per (attack, defense) of ``attacks`` x ``defenses`` that some row measured.

    ``attacks``: ``{"clean": {}, "em": <em's parameters>, ...}``; ``defenses``: ``{"none": {},
    "pgd-at": <its parameters>, ...}`` (the matrix's settings). Columns: attack, defense, value
    (median test accuracy), paper_value (median of the rows' paper values), rows, notebooks.
    ``data_source``, when given, must equal the rows' (a lab notebook on a smaller subset says so there).
    ``augment``: the victim's augmentation in every cell; a row recording another (``"defense_params":
    {"augment": "none"}``, ordinary training without augmentation) fills no cell.
    """
    pool = rows[(rows.profile == profile) & (rows.model == model) & (rows.dataset == dataset)
                & ((rows.data_source == data_source) if data_source is not None else True)
                & (rows.metric == "test_acc") & rows.attack.isin(list(attacks)) & rows.defense.isin(list(defenses))]
    found = {}
    for row in pool.itertuples():
        clean = row.attack == "clean"
        if float(row.poison_ratio) != (0.0 if clean else 1.0):
            continue
        if not matches(_params(row.attack_params), attacks[row.attack]):
            continue
        defense_params = _params(row.defense_params)
        if defense_params.get("augment", augment) != augment or not matches(defense_params, defenses[row.defense]):
            continue
        found.setdefault((row.attack, row.defense), []).append(row)
    lines = []
    for (attack, defense), group in found.items():
        values = pd.Series([r.value for r in group], dtype=float)
        papers = pd.Series([r.paper_value for r in group], dtype=float).dropna()
        lines.append({"attack": attack, "defense": defense, "value": values.median(),
                      "paper_value": papers.median() if len(papers) else float("nan"), "rows": len(group),
                      "notebooks": ", ".join(sorted({r.experiment for r in group}))})
    return pd.DataFrame(lines, columns=CELL_COLUMNS)


def missing(found: pd.DataFrame, attacks: list[str], defenses: list[str]) -> list[tuple[str, str]]:
    """The (attack, defense) pairs of the grid that ``found`` lacks, defense by defense (column by
    column), so a run with a small budget completes the first columns before starting the next."""
    have = set(zip(found.attack, found.defense))
    return [(a, d) for d in defenses for a in attacks if (a, d) not in have]


def grid(found: pd.DataFrame, attacks: list[str], defenses: list[str], column: str = "value") -> pd.DataFrame:
    """``found[column]`` as an attack x defense table in the given orders (missing cells NaN)."""
    table = found.pivot(index="attack", columns="defense", values=column) if len(found) else pd.DataFrame()
    return table.reindex(index=attacks, columns=defenses)
