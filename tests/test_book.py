import html
import json
import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest
import torch

import uexlib as ue
from uexlib import book, cli, profiles, results

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
        assert meta["uex"]["parameters"]["profile"] in profiles.names()
        snippet = book.provenance_path(run)
        assert snippet.is_file(), f"{snippet} missing: run `uex book`"
        assert snippet.read_text() == book.provenance_snippet(run), f"{snippet} does not describe {run.name}"


def test_chapters_include_the_provenance_of_their_run():
    chapters = {md.name: md.read_text() for md in (REPO / "book").glob("*.md")}
    for path in book.notebooks(REPO):
        include = f"```{{include}} runs/{path.stem}.provenance.md"
        assert any(include in text for text in chapters.values()), f"no chapter includes the provenance of {path.stem}"



def _package(root: Path) -> Path:
    """A stand-in for the uexlib package: two modules, one in a subpackage."""
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("from . import sub\n")
    (root / "sub" / "__init__.py").write_text("")
    (root / "sub" / "core.py").write_text("EPS = 8 / 255\n")
    return root


def test_code_sha256_follows_every_py_file_and_ignores_caches(tmp_path):
    package = _package(tmp_path / "pkg")
    before = book.code_sha256(package)
    (package / "sub" / "__pycache__").mkdir()
    (package / "sub" / "__pycache__" / "core.cpython-311.pyc").write_bytes(b"\x00compiled")
    (package / "sub" / "__pycache__" / "stray.py").write_text("x = 1\n")
    (package / "notes.txt").write_text("not code")
    assert book.code_sha256(package) == before
    (package / "sub" / "core.py").write_text("EPS = 4 / 255\n")
    assert book.code_sha256(package) != before
    (package / "sub" / "core.py").write_text("EPS = 8 / 255\n")
    (package / "sub" / "extra.py").write_text("")
    assert book.code_sha256(package) != before, "a new empty module changes the code"


def _project_with_run(tmp_path: Path, parameters: dict, package: Path, **uex) -> Path:
    """A project holding one source notebook and a fake executed run of it (no kernel involved)."""
    source = tmp_path / "project" / "notebooks" / "demo.ipynb"
    source.parent.mkdir(parents=True)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("profile = 'lab'")])
    notebook.cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(notebook, source)
    run = book.output_path(source, tmp_path / "project")
    run.parent.mkdir(parents=True)
    notebook.metadata["uex"] = {**book.run_record(source, parameters, package), **uex}
    nbformat.write(notebook, run)
    return source


def test_a_run_is_stale_when_its_code_source_or_parameters_change(tmp_path):
    package = _package(tmp_path / "pkg")
    source = _project_with_run(tmp_path, {"profile": "smoke"}, package)
    project = tmp_path / "project"
    assert not book.is_stale(source, {"profile": "smoke"}, project, package)
    assert book.is_stale(source, {"profile": "lab"}, project, package)
    (package / "sub" / "core.py").write_text("EPS = 4 / 255\n")
    assert book.is_stale(source, {"profile": "smoke"}, project, package)
    (package / "sub" / "core.py").write_text("EPS = 8 / 255\n")
    assert not book.is_stale(source, {"profile": "smoke"}, project, package)
    source.write_text(source.read_text().replace("'lab'", "'paper'"))
    assert book.is_stale(source, {"profile": "smoke"}, project, package)


def test_a_run_without_a_code_hash_is_stale(tmp_path):
    package = _package(tmp_path / "pkg")
    source = _project_with_run(tmp_path, {"profile": "smoke"}, package, code_sha256=None)
    assert book.is_stale(source, {"profile": "smoke"}, tmp_path / "project", package)


def test_provenance_snippet_states_profile_device_wall_time_and_commit(tmp_path):
    package = _package(tmp_path / "pkg")
    source = _project_with_run(tmp_path, {"profile": "smoke"}, package, profile="smoke",
                               device="cpu (x86_64, 2 threads)", wall_s=12.34, timestamp="2026-11-21T17:59:13+00:00",
                               git_commit="0123456789abcdef0123456789abcdef01234567+dirty")
    run = book.output_path(source, tmp_path / "project")
    path = book.write_provenance(run)
    assert path == run.with_name("demo.provenance.md")
    text = path.read_text()
    assert "profile `smoke`" in text
    assert r"device cpu (x86\_64, 2 threads)" in text, "the device is escaped so Markdown shows it verbatim"
    assert "wall time 12.3 s" in text
    assert "commit `0123456789+dirty`" in text and "abcdef" not in text
    assert "2026-11-21 17:59 UTC" in text


def test_provenance_snippet_names_the_parameters_a_run_set_besides_its_profile():
    record = {"parameters": {"profile": "lab", "poisons": ["em", "sc"], "seed": 1}, "wall_s": 3.0,
              "git_commit": "0123456789ab", "device": "cpu", "timestamp": "2026-11-21T17:59:13+00:00"}
    text = book.provenance_markdown(record)
    assert text.endswith(" Parameters set for it: `poisons = ['em', 'sc']`, `seed = 1`.\n"), text
    assert "Parameters" not in book.provenance_markdown({**record, "parameters": {"profile": "lab"}})


def test_provenance_snippet_of_an_older_run_says_what_was_not_recorded(tmp_path):
    record = {"parameters": {"profile": "lab"}, "wall_s": 391.2, "git_commit": "unknown"}
    text = book.provenance_markdown(record, {"end_time": "2026-11-21T17:59:13.280264+00:00"})
    assert text == ("**This run:** profile `lab`, device not recorded, wall time 391.2 s, commit `unknown`, "
                    "2026-11-21 17:59 UTC.\n")


@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory, data_root):
    """Every notebook executed under `smoke` in a copy of the project, then the HTML book built."""
    project = tmp_path_factory.mktemp("book") / "project"
    project.mkdir()
    for item in ("_config.yml", "_toc.yml", "references.bib", "assets", "_ext", "book", "notebooks", "data"):
        copy = shutil.copytree if (REPO / item).is_dir() else shutil.copy
        copy(REPO / item, project / item)
    shutil.rmtree(project / "book" / "runs")
    previous = os.environ.get("UEX_DATA_ROOT")
    os.environ["UEX_DATA_ROOT"] = str(data_root)  # the notebook kernels inherit it
    try:
        # Two notebooks at a time, a CPU thread each: CI's two cores stay busy while kernels start.
        assert cli.main(["book", "--profile", "smoke", "--project", str(project), "--jobs", "2"]) == 0
    finally:
        os.environ.pop("UEX_DATA_ROOT") if previous is None else os.environ.update(UEX_DATA_ROOT=previous)
    return project


@pytest.mark.e2e
def test_smoke_book_builds_end_to_end(smoke_book):
    project = smoke_book
    site = project / "_build" / "html"
    page = (site / "book" / "em_basics.html").read_text()
    assert "smoke" in page and "CIFAR-10 (JPEG copy)" in page
    # Formulas render offline: MathJax comes from the book itself, with its fonts.
    assert "_static/mathjax/tex-chtml.js" in page and "cdn.jsdelivr.net/npm/mathjax" not in page
    assert (site / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()
    run = json.loads((project / "book" / "runs" / "em_basics.ipynb").read_text())
    record = run["metadata"]["uex"]
    assert record["parameters"] == {"profile": "smoke"} and record["profile"] == "smoke"
    # `--jobs 2` gives each kernel half of the CPU threads, and the record says so.
    share = f"{max(1, (os.cpu_count() or 1) // 2)} threads"
    device = results.device_name() if torch.cuda.is_available() else re.sub(r"\d+ threads", share, results.device_name())
    assert record["code_sha256"] == book.code_sha256() and record["device"] == device
    assert html.escape(record["device"]) in page and f"wall time {record['wall_s']:.1f} s" in page
    glued = {o["metadata"]["scrapbook"]["name"]: o["data"] for c in run["cells"] for o in c.get("outputs", [])
             if "scrapbook" in o.get("metadata", {})}
    for figure in ("em_curves", "em_grid"):
        assert any(key.endswith("image/png") for key in glued[figure]), f"{figure} was glued without an image"
    assert not book.is_stale(project / "notebooks" / "em_basics.ipynb", {"profile": "smoke"}, project)
    assert book.is_stale(project / "notebooks" / "em_basics.ipynb", {"profile": "lab"}, project)
    status = (project / "book" / "reproduction_status.md").read_text()
    assert status == (REPO / "book" / "reproduction_status.md").read_text(), "smoke rows never change the status"


@pytest.mark.e2e
def test_every_page_reads_well_in_chromium(smoke_book):
    """Each page opened in headless Chromium as a reader would: no console errors or failed loads,
    every image decoded, every table with rows, no formula left as raw TeX, every widget rendered
    (from the book's own widget JavaScript), and each chapter with at least one table or figure."""
    import browser

    chrome = browser.chromium()
    if chrome is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing: .ci/run installs Debian's chromium")
        pytest.skip("no Chromium here (apt-get install chromium)")
    site = smoke_book / "_build" / "html"
    pages = [p for p in sorted((site / "book").rglob("*.html")) if not p.name.startswith(".")]
    assert len(pages) >= len(list((REPO / "book").glob("*.md"))), "every chapter became a page"
    text_only = {"intro", "how_to_rerun", "references", "reproduction_status", "labs"}
    for page in pages:
        name = page.relative_to(site).as_posix()
        seen = browser.inspect(page, chrome)
        assert not seen["errors"], f"{name}: {seen['errors']}"
        assert all(image["width"] > 0 and image["height"] > 0 for image in seen["images"]), \
            f"{name}: an image did not decode: {seen['images']}"
        assert all(rows > 0 for rows in seen["tables"]), f"{name}: a table without rows"
        assert not seen["raw_math"], f"{name}: raw TeX {seen['raw_math']} left on the page"
        assert seen["widgets"] >= seen["widget_views"] and not seen["broken_widgets"], \
            f"{name}: {seen['widget_views']} widget views, {seen['widgets']} rendered, {seen['broken_widgets']} broken"
        if page.parent.name == "book" and page.stem not in text_only:
            assert seen["tables"] or seen["images"], f"{name}: a chapter with neither table nor figure"


def test_side_by_side_cells_show_missing_paper_values_and_missing_runs():
    import pandas as pd

    from uexlib.results import side_by_side
    ours = pd.DataFrame({"a": [64.35, None], "b": [12.0, 3.25]}, index=["clean", "em"])
    paper = pd.DataFrame({"a": [94.66, 20.6], "b": [None, 1.0]}, index=["clean", "em"])
    shown = side_by_side(ours, paper)
    assert shown.loc["clean"].tolist() == ["64.3 (94.7)", "12.0 (-)"]
    assert shown.loc["em"].tolist() == ["", "3.2 (1.0)"]


def test_results_and_poisons_name_the_commit_of_the_imported_code(monkeypatch, tiny_set):
    """A long run must not name a commit made while it ran: the commit is fixed when uexlib is imported."""
    from uexlib import results, runtime
    monkeypatch.setattr(runtime, "git_commit", lambda: "moved-on")
    monkeypatch.setattr(results, "git_commit", lambda: "moved-on", raising=False)
    row = ue.result_row(experiment="e", paper="none", dataset="d", data_source="s", model="m", attack="clean",
                        attack_params={}, defense="none", defense_params={}, poison_ratio=0.0, metric="test_acc",
                        value=1.0, profile="smoke", seed=0, wall_s=0.0)
    assert row["git_commit"] == runtime.CODE_COMMIT != "moved-on"
    assert ue.provenance("smoke", 0)["git_commit"] == runtime.CODE_COMMIT
    poison = ue.Poison.from_perturbation(tiny_set, torch.zeros(40, 3, 16, 16), {"method": "test"})
    assert poison.metadata["git_commit"] == runtime.CODE_COMMIT


def test_every_chapter_cites_and_every_citation_is_in_the_bibliography():
    defined = set(re.findall(r"^@\w+\{([^,]+),", (REPO / "references.bib").read_text(), flags=re.M))
    for chapter in (REPO / "book").glob("*.md"):
        if chapter.name in ("references.md", "how_to_rerun.md", "reproduction_status.md"):
            continue
        cited = {key.strip() for group in re.findall(r"\{cite(?::[pt])?\}`([^`]+)`", chapter.read_text())
                 for key in group.split(",")}
        assert cited, f"{chapter.name} cites nothing"
        assert cited <= defined, f"{chapter.name} cites {sorted(cited - defined)}, missing from references.bib"


def test_a_figure_or_table_both_glued_and_shown_is_stored_once_and_still_glued():
    import nbformat

    def output(data, name=None):
        meta = {"scrapbook": {"name": name, "mime_prefix": "application/papermill.record/"}} if name else {}
        prefix = meta["scrapbook"]["mime_prefix"] if name else ""
        return nbformat.v4.new_output("display_data", data={f"{prefix}{k}": v for k, v in data.items()},
                                      metadata=meta)

    figure, other = {"image/png": "AAAA", "text/plain": "<Figure>"}, {"image/png": "BBBB", "text/plain": "<F>"}
    cell = nbformat.v4.new_code_cell("glue('curves', fig, display=False)\nfig")
    table = {"text/html": "<table>1</table>", "text/plain": "1"}
    cell.outputs = [output(figure, "curves"), output({"text/plain": "0.5"}, "acc"), output(figure), output(other),
                    output(table, "table")]
    later = nbformat.v4.new_code_cell("shown")  # a table glued in one cell and shown in the next, twice
    later.outputs = [output(table), output({"text/html": "<table>2</table>"}), output(table),
                     nbformat.v4.new_output("stream", name="stdout", text="progress\n")]  # has no data
    notebook = nbformat.v4.new_notebook(cells=[cell, later])
    assert book.merge_duplicate_outputs(notebook) == 3
    kept = notebook.cells[0].outputs + notebook.cells[1].outputs
    assert len(notebook.cells[0].outputs) == 3
    # Each glued copy moves to where the notebook showed it, and shows there.
    assert [o.get("data", {}).get("image/png") for o in kept] == [None, "AAAA", "BBBB", None, None, None]
    assert [o.get("data", {}).get("text/html") for o in kept][3:5] == ["<table>1</table>", "<table>2</table>"]
    assert kept[5]["output_type"] == "stream", "a stream output stays"
    assert kept[1]["metadata"]["scrapbook"] == {"name": "curves", "mime_prefix": ""}, "still glued, now shown"
    assert kept[3]["metadata"]["scrapbook"] == {"name": "table", "mime_prefix": ""}
    assert "application/papermill.record/text/plain" in kept[0]["data"], "other glue outputs stay hidden"
    assert book.merge_duplicate_outputs(notebook) == 0
    # A figure the notebook's own Markdown pastes stays hidden there; the shown copy goes.
    pasted = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("fig"),
                                             nbformat.v4.new_markdown_cell("```{glue:figure} curves\nCaption\n```")])
    pasted.cells[0].outputs = [output(figure, "curves"), output(figure)]
    assert book.merge_duplicate_outputs(pasted) == 1
    assert [o["metadata"].get("scrapbook", {}).get("mime_prefix") for o in pasted.cells[0].outputs] == [
        "application/papermill.record/"]


def test_published_runs_store_each_figure_and_table_once():
    for run in (REPO / "book" / "runs").glob("*.ipynb"):
        shown = ["".join(v) for c in json.loads(run.read_text())["cells"] for o in c.get("outputs", [])
                 for k, v in o.get("data", {}).items() if k.endswith(("image/png", "text/html"))]
        assert len(shown) == len(set(shown)), f"{run.name} stores a figure or a table twice"


def test_tables_for_the_book_have_no_row_numbers_no_nan_and_one_header_row():
    import numpy as np
    import pandas as pd

    ours = pd.DataFrame({"pgd-at": [64.3, np.nan]}, index=pd.Index(["clean", "em"], name="data"))
    ours.columns.name = "defense"
    html = ue.table(ours).to_html()
    assert "NaN" not in html and "nan" not in html
    assert html.count("<tr>") == 3, "one header row and two data rows"
    assert ">data</th>" in html and ">clean</td>" in html and ">64.30</td>" in html
    assert ">defense<" not in html, "the columns' name is not a second header row"
    plain = ue.table(pd.DataFrame({"noise": ["em", "rem"], "rounds": [6, 8]})).to_html()
    assert ">0</t" not in plain and ">1</t" not in plain, "no row-number column"
    series = ue.table(pd.Series({"profile": "lab", "train images": 10000})).to_html()
    assert ">profile</td>" in series and ">10000</td>" in series
    assert ue.table(ours).to_html() == html, "the same table renders to the same bytes (one stored copy)"


def _tiny_project(root: Path, cells: dict[str, str]) -> Path:
    """A project of one-cell notebooks (no torch), with the paper tables the status page reads."""
    project = root / "project"
    (project / "notebooks").mkdir(parents=True)
    (project / "book" / "results").mkdir(parents=True)
    shutil.copytree(REPO / "data", project / "data")
    for name, code in cells.items():
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("profile = 'lab'"),
                                                   nbformat.v4.new_code_cell(code)])
        notebook.cells[0].metadata["tags"] = ["parameters"]
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(notebook, project / "notebooks" / f"{name}.ipynb")
    return project


def test_the_book_runs_notebooks_in_parallel_with_a_share_of_the_threads_each(tmp_path):
    read_threads = "import os\nprint('threads', os.environ.get('OMP_NUM_THREADS'))"
    project = _tiny_project(tmp_path, {"one": read_threads, "two": read_threads, "three": read_threads})
    before = os.environ.get("OMP_NUM_THREADS")
    runs = book.run_book("smoke", project=project, build_html=False, log=lambda _: None, jobs=2)
    assert sorted(run["notebook"] for run in runs) == ["one", "three", "two"]
    share = str(max(1, (os.cpu_count() or 1) // 2))
    for name in ("one", "two", "three"):
        executed = nbformat.read(project / "book" / "runs" / f"{name}.ipynb", as_version=4)
        assert executed.cells[-1].outputs[0]["text"].strip() == f"threads {share}"
        assert executed.metadata["uex"]["parameters"] == {"profile": "smoke"}
    assert os.environ.get("OMP_NUM_THREADS") == before, "the parent's environment is restored"
    assert book.run_book("smoke", project=project, build_html=False, log=lambda _: None, jobs=2) == []


def test_a_failing_notebook_stops_a_parallel_book_run(tmp_path):
    project = _tiny_project(tmp_path, {"fine": "x = 1", "broken": "raise RuntimeError('boom')"})
    with pytest.raises(book.NotebookFailed, match="broken.ipynb failed in cell .*boom"):
        book.run_book("smoke", project=project, build_html=False, log=lambda _: None, jobs=2)
    assert not (project / "book" / "runs" / "broken.ipynb").exists()
    with pytest.raises(ValueError, match="jobs"):
        book.run_book("smoke", project=project, build_html=False, jobs=0)
