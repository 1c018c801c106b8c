"""The reproduction-status page: every paper table, its best profile, read off the results tables."""
from pathlib import Path

import pandas as pd
import pytest

from uexlib import cli, status

REPO = Path(__file__).resolve().parent.parent


def _project(tmp_path, results: list[dict], plan: str) -> Path:
    tables = tmp_path / "data" / "paper_tables"
    tables.mkdir(parents=True)
    for name, caption in (("000_rem_table1.csv", "adversarial training"), ("002_thesis_table3_5.csv", "grayscale"),
                          ("003_st_table5.csv", "overfitting")):
        pd.DataFrame({"caption_short": [caption] * 3, "value": [1.0, 2.0, 3.0]}).to_csv(tables / name, index=False)
    (tmp_path / "data" / "reproduction_plan.csv").write_text(plan)
    (tmp_path / "book" / "results").mkdir(parents=True)
    pd.DataFrame(results).to_csv(tmp_path / "book" / "results" / "x_lab.csv", index=False)
    return tmp_path


PLAN = ("paper,table,notebooks,needs\nrem,Table 1,rem_at,CIFAR-100 columns\nthesis,Table 3.5,thesis_aug,\n"
        "st,Table 5,,a counter-overfitting notebook\n")


def _row(paper, table, profile, paper_value):
    return {"experiment": "x", "paper": paper, "table": table, "profile": profile, "paper_value": paper_value}


def test_status_takes_the_best_profile_and_never_counts_smoke(tmp_path):
    project = _project(tmp_path, [_row("rem", "Table 1", "lab", 90.0), _row("rem", "Table 1", "lab", None),
                                  _row("rem", "Table 1", "paper", 91.0), _row("thesis", "Table 3.5", "smoke", 5.0),
                                  _row("st", "Table 5", "lab", 20.0), _row("st", "Table 5", "gpu", 20.0),
                                  _row("st", "Table 5", "gpu", 21.0)], PLAN)
    table = status.reproduction_status(project / "book" / "results", project / "data" / "paper_tables",
                                       project / "data" / "reproduction_plan.csv").set_index("table")
    assert list(table.paper) == ["thesis", "rem", "st"], "papers in the book's order"
    assert table.loc["Table 1", "status"] == "reproduced (paper scale)" and table.loc["Table 1", "compared"] == 1
    assert table.loc["Table 1", "needs"] == "CIFAR-100 columns"
    assert table.loc["Table 3.5", "status"] == "not yet run", "a smoke row is not a result"
    assert table.loc["Table 3.5", "needs"] == "a paper-scale run on a GPU"
    assert table.loc["Table 5", "status"] == "gpu scale" and table.loc["Table 5", "compared"] == 2
    assert table.loc["Table 5", "cells"] == 3


def test_a_table_missing_from_the_plan_or_a_plan_line_without_a_table_is_an_error(tmp_path):
    project = _project(tmp_path, [_row("rem", "Table 1", "lab", 90.0)], PLAN.replace("st,Table 5,,a counter-overfitting notebook\n", ""))
    with pytest.raises(ValueError, match="no line for st Table 5"):
        status.write_page(project)
    (project / "data" / "reproduction_plan.csv").write_text(PLAN + "st,Table 9,,x\n")
    with pytest.raises(ValueError, match="do not exist"):
        status.write_page(project)
    assert not (project / "book" / "reproduction_status.md").exists(), "no half-written page"


def test_page_lists_every_table_with_its_status(tmp_path):
    project = _project(tmp_path, [_row("rem", "Table 1", "lab", 90.0)], PLAN)
    assert cli.main(["status", "--project", str(project)]) == 0
    page = (project / "book" / "reproduction_status.md").read_text()
    assert "3 in all: 1 lab scale, 1 not yet run, 1 waiting" in page
    assert "| Table 1 | adversarial training | lab scale | 1 / 3 | `rem_at` | CIFAR-100 columns |" in page
    assert "| Table 5 | overfitting | waiting | 0 / 3 | none | a counter-overfitting notebook |" in page


def test_cli_refuses_a_folder_without_a_plan(tmp_path, capsys):
    assert cli.main(["status", "--project", str(tmp_path)]) == 2
    assert "holds no data/reproduction_plan.csv" in capsys.readouterr().err


def test_the_books_status_page_is_up_to_date_with_its_results():
    """Run `uex status` after adding results: the published page must match the results tables."""
    expected = status.markdown(status.reproduction_status())
    assert (REPO / "book" / "reproduction_status.md").read_text() == expected
    assert expected.count("\n| Table ") == len(list((REPO / "data" / "paper_tables").glob("*.csv")))


def test_the_plan_names_the_notebooks_that_write_each_table_and_only_real_ones():
    """`data/reproduction_plan.csv` is kept by hand: it must not drift from what the notebooks write."""
    plan = pd.read_csv(REPO / "data" / "reproduction_plan.csv", dtype=str, keep_default_na=False)
    listed = {(p, t): set(names.split()) for p, t, names in zip(plan.paper, plan.table, plan.notebooks)}
    notebooks = {path.stem for path in (REPO / "notebooks").glob("*.ipynb")}
    assert {name for names in listed.values() for name in names} <= notebooks
    rows = status.load_results(REPO / "book" / "results", status.RESULT_PROFILES)
    rows = rows[rows.table.fillna("").str.startswith("Table ")]      # figures have no line in the plan
    unlisted = {(p, t, name) for (p, t), group in rows.groupby(["paper", "table"])
                for name in set(group.experiment) - listed.get((p, t), set())}
    assert not unlisted, f"add these notebooks to data/reproduction_plan.csv: {sorted(unlisted)}"
