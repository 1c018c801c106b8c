import pytest

import uexlib as ue
from uexlib import cli


@pytest.mark.parametrize("argv, message", [
    (["train", "--profile", "smoke", "--model", "resnet19"], "--model must be one of"),
    (["train", "--profile", "smoke", "--poison", "missing.npz"], "does not exist"),
    (["poison", "emm", "--profile", "smoke", "--out", "x.npz"], "unknown generator 'emm'; available: ar, em"),
    (["poison", "em", "--profile", "smoke", "--out", "x.txt"], "must be a path ending in .npz"),
    (["poison", "em", "--profile", "smoke", "--out", "x.npz", "-p", "eps", "8"], "did you mean 8/255"),
    (["poison", "em", "--profile", "smoke", "--out", "x.npz", "-p", "foo", "3"],
     "generator 'em' takes no parameter 'foo'; accepted: eps, mode"),
    (["poison", "em", "--profile", "smoke", "--out", "x.npz", "--seed", "3", "-p", "seed", "4"], "disagree"),
    (["poison", "--profile", "smoke", "--out", "x.npz"], "give a generator name"),
    (["defend", "no-such", "--profile", "smoke"], "unknown defense 'no-such'"),
    (["defend", "none", "--profile", "smoke", "-p", "eps", "8/255"], "defense 'none' takes no parameter 'eps'"),
    (["run", "no_such_notebook"], "notebook must be one of"),
    (["book", "--project", "/nonexistent"], "no _config.yml"),
])
def test_bad_arguments_fail_fast_with_a_named_one_line_error(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_unknown_profile_is_rejected_by_the_parser():
    with pytest.raises(SystemExit):
        cli.main(["train", "--profile", "huge"])


def test_parameter_values_parse_like_python():
    assert cli._params([["eps", "8/255"], ["mode", "classwise"], ["steps", "10"], ["types", "['a']"]]) == \
        {"eps": 8 / 255, "mode": "classwise", "steps": 10, "types": ["a"]}
    # Lists with arithmetic (notebook radii); anything else stays a string, never runs.
    assert cli._params([["at_radii", "[0, 2/255]"], ["x", "__import__('os')"], ["y", "1/0"]]) == \
        {"at_radii": [0, 2 / 255], "x": "__import__('os')", "y": "1/0"}


def test_lists_show_every_method_with_its_defaults(capsys):
    assert cli.main(["poison", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(f"{name}: " in out for name in ue.generators.list_generators()) and "eps=8/255" in out
    assert cli.main(["defend", "--list"]) == 0
    out = capsys.readouterr().out
    assert "training-time defenses:" in out and "none: " in out and "purifiers:" in out


def test_data_lists_the_parquet_copies(data_root, capsys):
    assert cli.main(["data", "--root", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert "cifar10" in out and "parquet (no download)" in out


def test_poison_honours_the_seed_then_trains_and_defends(data_root, tmp_path, capsys):
    paths = {seed: tmp_path / f"em{seed}.npz" for seed in (0, 3)}
    for seed, out in paths.items():
        assert cli.main(["poison", "em", "--root", str(data_root), "--profile", "smoke", "--out", str(out),
                         "--seed", str(seed), "-p", "mode", "classwise"]
                        + (["--publish", str(tmp_path / "png")] if seed == 0 else [])) == 0
    assert len(list((tmp_path / "png").glob("*/*.png"))) == 200
    zero, three = (ue.Poison.load(paths[s], root=data_root) for s in (0, 3))
    assert three.metadata["seed"] == 3 and three.metadata["params"]["seed"] == 3
    assert zero.content_hash() != three.content_hash()
    assert cli.main(["train", "--root", str(data_root), "--profile", "smoke", "--poison", str(paths[0]),
                     "--out", str(tmp_path / "h.csv")]) == 0
    assert "profile" in (tmp_path / "h.csv").read_text().splitlines()[0]
    assert cli.main(["defend", "none", "--root", str(data_root), "--profile", "smoke", "--poison", str(paths[0]),
                     "--out", str(tmp_path / "d.csv")]) == 0
    assert "none" in (tmp_path / "d.csv").read_text()


def test_a_value_a_notebook_rejects_is_a_one_line_error_with_nothing_published(data_root, tmp_path, capsys,
                                                                              monkeypatch):
    monkeypatch.setenv("UEX_DATA_ROOT", str(data_root))
    argv = ["run", "rem_adversarial_training", "--profile", "smoke", "--output", str(tmp_path),
            "-p", "methods", "['em', 'lsp']"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "methods: ['lsp'] have no L-inf radius" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "rem_adversarial_training.ipynb").exists(), "a failed run publishes no notebook"
