import json
import shutil
from pathlib import Path

import pytest

from uexlib import book, cli

REPO = Path(__file__).resolve().parent.parent


def test_notebook_sources_are_stored_without_outputs():
    for path in book.notebooks(REPO):
        notebook = json.loads(path.read_text())
        code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), path.name
        assert "parameters" in code[0]["metadata"].get("tags", []), f"{path.name}: first code cell is not `parameters`"


def test_published_runs_state_their_profile():
    for path in book.notebooks(REPO):
        run = book.output_path(path, REPO)
        assert run.is_file(), f"{run} missing: run `uex book`"
        meta = json.loads(run.read_text())["metadata"]
        assert not meta["papermill"]["exception"]
        assert meta["uex"]["parameters"]["profile"] in ("smoke", "lab", "paper")


@pytest.mark.e2e
def test_smoke_book_builds_end_to_end(tmp_path, data_root, monkeypatch):
    """Execute every notebook under `smoke` in a copy of the project, then build the HTML book."""
    monkeypatch.setenv("UEX_DATA_ROOT", str(data_root))  # the notebook kernels inherit it
    project = tmp_path / "project"
    project.mkdir()
    for item in ("_config.yml", "_toc.yml", "book", "notebooks", "data"):
        copy = shutil.copytree if (REPO / item).is_dir() else shutil.copy
        copy(REPO / item, project / item)
    shutil.rmtree(project / "book" / "runs")
    assert cli.main(["book", "--profile", "smoke", "--project", str(project)]) == 0
    html = project / "_build" / "html"
    page = (html / "book" / "em_basics.html").read_text()
    assert "smoke" in page and "CIFAR-10 (JPEG copy)" in page
    run = json.loads((project / "book" / "runs" / "em_basics.ipynb").read_text())
    assert run["metadata"]["uex"]["parameters"] == {"profile": "smoke"}
    glued = {o["metadata"]["scrapbook"]["name"]: o["data"] for c in run["cells"] for o in c.get("outputs", [])
             if "scrapbook" in o.get("metadata", {})}
    for figure in ("em_curves", "em_grid"):
        assert any(key.endswith("image/png") for key in glued[figure]), f"{figure} was glued without an image"
    assert not book.is_stale(project / "notebooks" / "em_basics.ipynb", {"profile": "smoke"}, project)
    assert book.is_stale(project / "notebooks" / "em_basics.ipynb", {"profile": "lab"}, project)
