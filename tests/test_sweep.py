"""uex sweep: a notebook over a grid of parameters, resumable, locally or on a Ray cluster."""
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from uexlib import cli, sweep

TINY = '''import uexlib as ue
row = ue.result_row(experiment="tiny", paper="none", dataset="d", data_source="s", model="m", attack="clean",
                    attack_params={}, defense="none", defense_params={}, poison_ratio=0.0, metric="product",
                    value=x * y, profile=profile, seed=0, wall_s=0.0)
ue.write_results([row], "tiny", profile)'''


@pytest.fixture
def project(tmp_path):
    (tmp_path / "notebooks").mkdir()
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('profile = "smoke"\nx = 1\ny = 1.0', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(TINY)], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                 "language": "python"}})
    nbformat.write(notebook, tmp_path / "notebooks" / "tiny.ipynb")
    return tmp_path


def _grid(project: Path, text: str) -> Path:
    path = project / "grid.yaml"
    path.write_text(text)
    return path


GRID = "notebook: tiny\nprofile: smoke\nparameters: {y: 1/4}\ngrid:\n  x: [2, 8]\nworkers: 2\n"


def test_a_sweep_runs_every_combination_and_collects_its_rows(project, capsys):
    grid = _grid(project, GRID)
    assert cli.main(["sweep", str(grid), "--project", str(project)]) == 0
    assert "2 runs, 0 already done, 2 to run" in capsys.readouterr().out
    rows = pd.read_csv(project / "sweeps" / "grid" / "rows.csv")
    assert sorted(rows.value) == [0.5, 2.0], "x * y with y = 1/4 parsed as a number"
    assert rows.run.nunique() == 2 and set(rows.experiment) == {"tiny"}
    assert sorted(rows.parameters) == ['{"profile": "smoke", "x": 2, "y": 0.25}', '{"profile": "smoke", "x": 8, "y": 0.25}']


def test_a_sweep_skips_finished_runs_and_resumes_an_interrupted_one(project, capsys):
    grid = _grid(project, GRID)
    assert cli.main(["sweep", str(grid), "--project", str(project)]) == 0
    loaded = sweep.load(grid, project)
    finished = loaded.target(loaded.runs[0])
    stamp = finished.stat().st_mtime_ns
    loaded.target(loaded.runs[1]).unlink()  # as if the sweep had stopped before this run finished
    capsys.readouterr()
    assert cli.main(["sweep", str(grid), "--project", str(project)]) == 0
    assert "2 runs, 1 already done, 1 to run" in capsys.readouterr().out
    assert finished.stat().st_mtime_ns == stamp, "a finished run is not executed again"
    assert len(pd.read_csv(loaded.output / "rows.csv")) == 2


@pytest.mark.parametrize("text, message", [
    ("notebook: nope\n", "notebook must be one of tiny"),
    ("notebook: tiny\ngrids: {x: [1]}\n", "unknown key(s) ['grids']"),
    ("notebook: tiny\ngrid: {x: 3}\n", "grid 'x' must be a non-empty list"),
    ("notebook: tiny\nparameters: {x: 1}\ngrid: {x: [1, 2]}\n", "both fixed and in the grid"),
    ("notebook: tiny\nprofile: huge\n", "unknown profile 'huge'"),
    ("notebook: tiny\nworkers: 0\n", "workers must be an integer >= 1"),
    ("grid: {x: [1]}\n", "'notebook' is required"),
    ("notebook: [tiny\n", "is not valid YAML"),
])
def test_grid_file_mistakes_are_one_line_errors(project, capsys, text, message):
    assert cli.main(["sweep", str(_grid(project, text)), "--project", str(project)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (project / "sweeps").exists(), "nothing runs before the grid is checked"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_sweep_runs_on_a_ray_cluster(project, capsys):
    pytest.importorskip("ray")
    ray = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    port = _free_port()
    subprocess.run([ray, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                    "--disable-usage-stats"], check=True, capture_output=True, timeout=120)
    try:
        grid = _grid(project, GRID.replace("workers: 2\n", ""))
        assert cli.main(["sweep", str(grid), "--project", str(project), "--address", f"127.0.0.1:{port}",
                         "--cpus-per-run", "1"]) == 0
        assert "(ray)" in capsys.readouterr().out
        assert sorted(pd.read_csv(project / "sweeps" / "grid" / "rows.csv").value) == [0.5, 2.0]
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=120)
