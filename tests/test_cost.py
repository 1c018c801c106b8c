"""The cost chapter's tables, from constructed results rows."""
import json

import pandas as pd
import pytest

import uexlib as ue


def _row(experiment, attack, defense, wall_s, metric="test_acc", value=50.0, paper_value=None, device="cpu",
         paper="none", table=""):
    return {"experiment": experiment, "paper": paper, "table": table, "attack": attack, "defense": defense,
            "metric": metric, "value": value, "paper_value": paper_value, "profile": "lab", "device": device,
            "wall_s": wall_s}


def test_defense_costs_are_multiples_of_ordinary_training_in_the_same_notebook():
    rows = pd.DataFrame([_row("a", "clean", "none", 100), _row("a", "clean", "pgd-at", 400),
                         _row("a", "em", "pgd-at", 900),  # poisoned rows include generation: not a defense cost
                         _row("b", "clean", "none", 50), _row("b", "clean", "pgd-at", 250),
                         _row("b", "clean", "jpeg", 55), _row("c", "clean", "cutout", 70)])
    costs = ue.cost.defense_costs(rows).set_index("defense")
    assert costs.loc["pgd-at", "x ordinary training"] == pytest.approx(4.5)  # median of 4 and 5
    assert costs.loc["pgd-at", "notebooks"] == 2 and costs.loc["pgd-at", "median seconds"] == 325
    assert costs.loc["jpeg", "x ordinary training"] == pytest.approx(1.1)
    assert pd.isna(costs.loc["cutout", "x ordinary training"]), "no ordinary run to compare with"
    assert costs.loc["none", "x ordinary training"] == 1.0
    assert list(costs.index[:3]) == ["none", "jpeg", "pgd-at"], "cheapest first"


def test_generation_costs_carry_the_papers_hours_only_where_they_are_given():
    rows = pd.DataFrame([_row("x", "rem", "none", 270, metric="generation_h", value=0.075, paper_value=22.6,
                              paper="rem", table="Table 6"),
                         _row("y", "em", "none", 350, metric="generation_h", value=0.097),
                         _row("x", "rem", "none", 100)])
    costs = ue.cost.generation_costs(rows)
    assert list(costs.method) == ["em", "rem"]
    assert costs.loc[1, "paper hours"] == 22.6 and costs.loc[1, "paper table"] == "REM Table 6"
    assert costs.loc[0, "paper table"] == "" and pd.isna(costs.loc[0, "paper hours"])


def test_notebook_costs_read_every_finished_run(tmp_path):
    record = {"profile": "lab", "device": "cpu (x86_64, 2 threads)", "wall_s": 2912.0, "git_commit": "de67e56ad7abd"}
    (tmp_path / "rem.ipynb").write_text(json.dumps({"metadata": {"uex": record}, "cells": []}))
    (tmp_path / "old.ipynb").write_text(json.dumps({"metadata": {}, "cells": []}))
    (tmp_path / ".x.partial.ipynb").write_text(json.dumps({"metadata": {"uex": record}, "cells": []}))
    costs = ue.cost.notebook_costs(tmp_path).set_index("notebook")
    assert list(costs.index) == ["old", "rem"]
    assert costs.loc["rem", "minutes"] == 48.5 and costs.loc["rem", "commit"] == "de67e56ad7"
    assert pd.isna(costs.loc["old", "minutes"])
