import pytest

from uexlib import cli


@pytest.mark.parametrize("argv, message", [
    (["train", "--profile", "smoke", "--model", "resnet19"], "--model must be one of"),
    (["train", "--profile", "smoke", "--poison", "missing.npz"], "does not exist"),
    (["poison", "--profile", "smoke", "--method", "emm", "--out", "x.npz"], "--method must be one of"),
    (["poison", "--profile", "smoke", "--out", "x.txt"], "must end in .npz"),
    (["poison", "--profile", "smoke", "--out", "x.npz", "-p", "eps", "8"], "did you mean 8/255"),
    (["run", "no_such_notebook"], "notebook must be one of"),
    (["book", "--project", "/nonexistent"], "no _config.yml"),
])
def test_bad_arguments_fail_fast_with_a_named_error(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_unknown_profile_is_rejected_by_the_parser():
    with pytest.raises(SystemExit):
        cli.main(["train", "--profile", "huge"])


def test_parameter_values_parse_like_python():
    assert cli._params([["eps", "8/255"], ["mode", "classwise"], ["steps", "10"], ["types", "['a']"]]) == \
        {"eps": 8 / 255, "mode": "classwise", "steps": 10, "types": ["a"]}


def test_data_lists_the_parquet_copies(data_root, capsys):
    assert cli.main(["data", "--root", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert "cifar10" in out and "parquet (no download)" in out


def test_poison_then_train_from_the_command_line(data_root, tmp_path, capsys):
    out = tmp_path / "em.npz"
    assert cli.main(["poison", "--root", str(data_root), "--profile", "smoke", "--out", str(out),
                     "-p", "mode", "classwise", "--publish", str(tmp_path / "png")]) == 0
    assert out.is_file() and len(list((tmp_path / "png").glob("*/*.png"))) == 200
    assert cli.main(["train", "--root", str(data_root), "--profile", "smoke", "--poison", str(out),
                     "--out", str(tmp_path / "h.csv")]) == 0
    assert "profile" in (tmp_path / "h.csv").read_text().splitlines()[0]
