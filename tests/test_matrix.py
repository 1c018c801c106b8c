"""The grand matrix's cell rule, on constructed rows."""
import json

import pandas as pd

from uexlib import matrix

EPS = 8 / 255
AT = {"eps": EPS, "steps": 3, "norm": "linf"}


def _row(attack, defense, value, attack_params=None, defense_params=None, ratio=1.0, experiment="a",
         profile="lab", model="cnn@0.5", paper_value=None, source="CIFAR-10 (JPEG copy)"):
    return {"experiment": experiment, "attack": attack, "defense": defense, "value": value, "paper_value": paper_value,
            "attack_params": json.dumps(attack_params or {}), "defense_params": json.dumps(defense_params or {}),
            "poison_ratio": ratio, "profile": profile, "model": model, "dataset": "cifar10", "metric": "test_acc",
            "data_source": source}


ATTACKS = {"clean": {}, "em": {"eps": EPS, "mode": "samplewise", "steps": 10, "augment": "crop_flip"},
           "lsp": {"eps": None}}
DEFENSES = {"none": {}, "pgd-at": AT}


def test_a_row_fills_a_cell_only_at_the_matrix_settings():
    rows = pd.DataFrame([
        _row("clean", "none", 64.0, ratio=0.0),
        _row("em", "none", 30.0, {"eps": EPS}),
        _row("em", "none", 34.0, {"eps": EPS * (1 + 1e-9)}, experiment="b", paper_value=20.0),
        _row("em", "none", 10.0, {"eps": 16 / 255}),                    # another radius
        _row("em", "none", 11.0, {"eps": EPS, "mode": "classwise"}),    # another mode
        _row("em", "none", 12.0, {"eps": EPS, "augment": "none"}),      # another augmentation
        _row("em", "none", 33.0, {"eps": EPS, "norm": "linf"}, experiment="c"),  # a note, not a parameter
        _row("em", "none", 13.0, {"eps": EPS}, ratio=0.5),               # partly poisoned
        _row("em", "none", 14.0, {"eps": EPS}, profile="smoke"),
        _row("em", "none", 15.0, {"eps": EPS}, model="resnet18"),
        _row("em", "pgd-at", 50.0, {"eps": EPS}, {**AT, "eps": 4 / 255}),  # another AT radius
        _row("em", "pgd-at", 55.0, {"eps": EPS}, AT),
        _row("lsp", "none", 20.0, {"eps": 0.3}),                         # the matrix keeps lsp's own default
        _row("tap", "none", 9.0, {"eps": EPS}),                          # not in the matrix
        _row("em", "none", 16.0, {"eps": EPS}, source="CIFAR-10 (JPEG copy), 300 per class"),  # a smaller set
        _row("em", "none", 17.0, {"eps": EPS}, {"augment": "none"}),     # the victim trained without augmentation
        _row("em", "none", 32.0, {"eps": EPS}, {"augment": "crop_flip"}, experiment="d"),
    ])
    found = matrix.cells(rows, "lab", "cnn@0.5", ATTACKS, DEFENSES,
                         data_source="CIFAR-10 (JPEG copy)").set_index(["attack", "defense"])
    assert found.loc[("em", "none"), "value"] == 32.5 and found.loc[("em", "none"), "rows"] == 4
    assert found.loc[("em", "none"), "notebooks"] == "a, b, c, d" and found.loc[("em", "none"), "paper_value"] == 20.0
    assert found.loc[("em", "pgd-at"), "value"] == 55.0
    assert found.loc[("clean", "none"), "value"] == 64.0 and found.loc[("lsp", "none"), "value"] == 20.0
    assert len(found) == 4


def test_missing_cells_and_the_grid_follow_the_requested_order():
    found = pd.DataFrame([{"attack": "em", "defense": "none", "value": 30.0, "paper_value": None, "rows": 1,
                           "notebooks": "a"}])
    assert matrix.missing(found, ["clean", "em"], ["none", "pgd-at"]) == [("clean", "none"), ("clean", "pgd-at"),
                                                                         ("em", "pgd-at")], "column by column"
    assert matrix.missing(found, ["clean", "em", "rem"], ["none", "pgd-at"])[:2] == [("clean", "none"), ("rem", "none")]
    table = matrix.grid(found, ["clean", "em"], ["none", "pgd-at"])
    assert list(table.index) == ["clean", "em"] and list(table.columns) == ["none", "pgd-at"]
    assert table.loc["em", "none"] == 30.0 and table.isna().sum().sum() == 3
