"""Execute the parameterized notebooks with papermill and build the Jupyter Book (1.x).

Executed notebooks land in ``book/runs/<name>.ipynb`` (kernel working directory ``book/runs``)
with a ``uex`` metadata block: the source notebook's sha256, the parameters, the sha256 of the
uexlib code, and the profile, device, wall time, commit and time of the run. A run is stale when
the source, the parameters or the code no longer match. Beside each run, ``<name>.provenance.md``
states where it came from; chapter pages ``{include}`` it.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from . import profiles, status
from .runtime import REPO_ROOT, atomic_path, check_int, enter_worker_environment, git_commit, worker_environments

PACKAGE_DIR = Path(__file__).resolve().parent


class NotebookFailed(RuntimeError):
    """A notebook raised; its partial output is kept beside, never published."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def notebooks(project: Path = REPO_ROOT) -> list[Path]:
    return sorted((project / "notebooks").glob("*.ipynb"))


def find_notebook(name: str, project: Path = REPO_ROOT) -> Path:
    candidates = {p.stem: p for p in notebooks(project)}
    stem = Path(name).stem
    if stem not in candidates:
        raise ValueError(f"notebook must be one of {', '.join(candidates) or '(none)'}; got {name!r}")
    return candidates[stem]


def output_path(source: Path, project: Path = REPO_ROOT) -> Path:
    return project / "book" / "runs" / source.name


def code_sha256(package_dir: Path = PACKAGE_DIR) -> str:
    """sha256 over the sorted relative paths and bytes of every ``*.py`` under ``package_dir``.

    A notebook's output depends on the library it imports, so a change to any module makes its run stale.
    """
    package_dir = Path(package_dir)
    files = sorted(p.relative_to(package_dir).as_posix() for p in package_dir.rglob("*.py")
                   if "__pycache__" not in p.relative_to(package_dir).parts)
    digest = hashlib.sha256()
    for name in files:
        # Path, NUL, then the file's own hash: two different trees never feed the same bytes.
        digest.update(name.encode() + b"\0" + _sha256(package_dir / name).encode() + b"\n")
    return digest.hexdigest()


def run_record(source: Path, parameters: dict, package_dir: Path = PACKAGE_DIR) -> dict:
    """What a run depends on: the source notebook, its parameters and the uexlib code."""
    return {"source_sha256": _sha256(source), "parameters": parameters, "code_sha256": code_sha256(package_dir)}


def is_finished(target: Path, source: Path, parameters: dict, package_dir: Path = PACKAGE_DIR) -> bool:
    """True when ``target`` is a successful run of this exact source, parameters and code."""
    if not Path(target).is_file():
        return False
    # Only a fully successful run is ever renamed into place (see execute), so the record suffices.
    recorded = json.loads(Path(target).read_text()).get("metadata", {}).get("uex", {})
    expected = run_record(source, parameters, package_dir)
    return {k: recorded.get(k) for k in expected} == expected


def is_stale(source: Path, parameters: dict, project: Path = REPO_ROOT, package_dir: Path = PACKAGE_DIR) -> bool:
    """True unless ``book/runs`` holds a successful run of this exact source, parameters and code."""
    return not is_finished(output_path(source, project), source, parameters, package_dir)


def provenance_path(target_notebook: Path) -> Path:
    return Path(target_notebook).with_suffix(".provenance.md")


def _escape_markdown(text: str) -> str:
    return "".join(f"\\{c}" if c in "\\`*_[]{}<>|#$~" else c for c in text)


def _short_commit(commit: str) -> str:
    sha, dirty, _ = commit.partition("+dirty")
    return sha[:10] + dirty if len(sha) == 40 else commit


def provenance_markdown(record: dict, papermill: dict | None = None) -> str:
    """One sentence for the chapter page: profile, device, wall time, short commit and date of a run,
    then the parameters the run set besides the profile, if any (a reader rerunning it needs them).

    ``record`` is a run's ``metadata.uex`` block. A field that older runs lack reads "not recorded";
    the profile falls back to the parameters and the date to papermill's ``end_time``.
    """
    missing = "not recorded"
    profile = record.get("profile") or record.get("parameters", {}).get("profile") or missing
    device = _escape_markdown(record.get("device") or missing)
    wall = f"{record['wall_s']:.1f} s" if isinstance(record.get("wall_s"), (int, float)) else missing
    commit = f"`{_short_commit(record['git_commit'])}`" if record.get("git_commit") else missing
    stamp = record.get("timestamp") or (papermill or {}).get("end_time")
    date = datetime.fromisoformat(stamp).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if stamp else missing
    text = f"**This run:** profile `{profile}`, device {device}, wall time {wall}, commit {commit}, {date}."
    others = {k: v for k, v in record.get("parameters", {}).items() if k != "profile"}
    if others:
        text += " Parameters set for it: " + ", ".join(f"`{k} = {v!r}`" for k, v in sorted(others.items())) + "."
    return text + "\n"


def provenance_snippet(target_notebook: Path) -> str:
    """The Markdown of ``<name>.provenance.md``, from an executed notebook's ``metadata.uex`` block."""
    target_notebook = Path(target_notebook)
    metadata = json.loads(target_notebook.read_text()).get("metadata", {})
    return (f"% Written by uexlib.book.write_provenance from {target_notebook.name}; do not edit.\n"
            + provenance_markdown(metadata.get("uex", {}), metadata.get("papermill")))


def write_provenance(target_notebook: Path) -> Path:
    """Write ``<name>.provenance.md`` beside an executed notebook; the chapter page ``{include}``s it."""
    path = provenance_path(target_notebook)
    with atomic_path(path) as tmp:
        tmp.write_text(provenance_snippet(target_notebook))
    return path


def _profile_of(source: Path, parameters: dict) -> str:
    """The profile a run uses: the ``profile`` parameter, else the default in the notebook's parameters cell."""
    import papermill

    if "profile" in parameters:
        return str(parameters["profile"])
    default = papermill.inspect_notebook(str(source)).get("profile", {}).get("default")
    return str(ast.literal_eval(default)) if default else "not set"


GLUE_PREFIX = "application/papermill.record/"  # myst-nb's mime prefix of a glue(..., display=False) output


def merge_duplicate_outputs(notebook) -> int:
    """Keep one copy of each figure or table a notebook both glues and shows.

    A shown output (image or HTML) identical to a glued one is dropped. If the notebook's own
    Markdown pastes that glue (``{glue:figure} name``), the paste shows it and the glued output
    stays hidden; otherwise the glued output takes the shown one's place, made displayable
    (myst-nb shows a glue output whose ``mime_prefix`` is empty, and chapters still find it by
    name). So the notebook page shows each once and the file stores each once. Returns how many
    outputs it dropped.
    """
    kinds = ("image/png", "text/html")
    pasted = {name for cell in notebook.cells if cell.cell_type == "markdown"
              for name in re.findall(r"\{glue(?::\w+)?\}`?\s*([\w.-]+)", "".join(cell.source))}
    glued = {}
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            book = output.get("metadata", {}).get("scrapbook", {})
            if not book:
                continue
            if book["name"] in pasted and not book.get("mime_prefix"):
                # Shown by an earlier merge although the notebook pastes it: hide it again.
                output["data"] = {GLUE_PREFIX + k: v for k, v in output["data"].items()}
                book["mime_prefix"] = GLUE_PREFIX
            for kind in kinds:
                payload = output.get("data", {}).get(f"{book.get('mime_prefix', '')}{kind}")
                if payload is not None:
                    glued.setdefault((kind, "".join(payload)), output)
    replacement = {}  # id of a shown output -> the glued output that takes its place (None: just drop it)
    placed = set()  # glued outputs already moved: a second shown copy (say, the backend's) is dropped
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if "data" in output and "scrapbook" not in output.get("metadata", {}):  # not a stream
                twin = next((glued[kind, "".join(output["data"][kind])] for kind in kinds
                             if (kind, "".join(output["data"].get(kind, ""))) in glued), None)
                if twin is None:
                    continue
                shown = twin["metadata"]["scrapbook"]["name"] in pasted or id(twin) in placed
                replacement[id(output)] = None if shown else twin
                placed.add(id(twin))
    moved = {id(twin) for twin in replacement.values() if twin is not None}
    for cell in notebook.cells:
        if "outputs" not in cell:
            continue
        kept = []
        for output in cell["outputs"]:
            if id(output) in moved:
                continue
            if id(output) in replacement:
                output = replacement[id(output)]
                if output is None:
                    continue
                prefix = output["metadata"]["scrapbook"]["mime_prefix"]
                output["data"] = {k[len(prefix):]: v for k, v in output["data"].items()}
                output["metadata"]["scrapbook"]["mime_prefix"] = ""
            kept.append(output)
        cell["outputs"] = kept
    return len(replacement)


def execute(source: Path, parameters: dict, project: Path = REPO_ROOT, target: Path | None = None,
            progress: bool = False) -> dict:
    """Run ``source`` with papermill into ``target`` (default ``book/runs/<name>.ipynb``).

    Raises :class:`NotebookFailed` on any cell error. The executed notebook replaces the previous
    one only when every cell succeeded, and then ``<name>.provenance.md`` is written beside it;
    the kernel runs in the target's folder.
    """
    import nbformat
    import papermill

    from .results import device_name

    # The kernel writes its results tables (uexlib.results) into the book's book/results, or
    # beside a run sent elsewhere, so a rerun with other parameters never overwrites the book's.
    os.environ["UEX_RESULTS_DIR"] = str(project / "book" / "results" if target is None else Path(target).parent)
    target = Path(target) if target is not None else output_path(source, project)
    # The "python3" kernel spec runs whatever `python` is first on PATH: make it this interpreter.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.stem}.partial.ipynb")
    # Recorded before the run: the code and commit the kernel imports, not whatever is there afterwards.
    record = {**run_record(source, parameters), "profile": _profile_of(source, parameters),
              "device": device_name(), "git_commit": git_commit()}
    started = time.perf_counter()
    try:
        papermill.execute_notebook(str(source), str(partial), parameters=parameters, cwd=str(target.parent),
                                   kernel_name="python3", progress_bar=progress, log_output=False)
    except papermill.PapermillExecutionError as error:
        raise NotebookFailed(f"{source.name} failed in cell {error.exec_count}: {error.ename}: {error.evalue}; "
                             f"partial output kept in {partial}") from error
    wall_s = time.perf_counter() - started
    notebook = nbformat.read(partial, as_version=4)
    merge_duplicate_outputs(notebook)
    notebook.metadata["uex"] = {**record, "wall_s": round(wall_s, 1),
                                "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    nbformat.write(notebook, partial)
    os.replace(partial, target)
    write_provenance(target)
    return {"notebook": source.stem, "wall_s": wall_s, "output": str(target)}


def build(project: Path = REPO_ROOT, strict: bool = True) -> Path:
    """Build the HTML book; with ``strict`` any Sphinx warning (a missing glue key...) fails it."""
    exe = Path(sys.executable).with_name("jupyter-book")
    command = [str(exe) if exe.exists() else "jupyter-book", "build", str(project), "--all"]
    if strict:
        command += ["-W", "-n", "--keep-going"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return project / "_build" / "html" / "index.html"


def run_book(profile: str, project: Path = REPO_ROOT, force: bool = False, build_html: bool = True,
             log=print, jobs: int = 1) -> list[dict]:
    """Execute every stale notebook under ``profile``, then build the book.

    ``jobs`` > 1 splits the stale notebooks between that many worker processes (as ``uex sweep``
    does: each with an equal share of the CPU threads, or one GPU each); a failing notebook ends
    its worker's share and is raised. A notebook's numbers depend on its thread count, so runs
    meant for the book use ``jobs=1``.
    """
    profiles.get(profile)
    check_int("jobs", jobs, low=1)
    if shutil.which("jupyter-book") is None and not Path(sys.executable).with_name("jupyter-book").exists():
        raise RuntimeError("jupyter-book is not installed; install the project with its book extras")
    parameters = {"profile": profile}
    stale = []
    for source in notebooks(project):
        if force or is_stale(source, parameters, project):
            stale.append(source)
        else:
            log(f"{source.name}: up to date for profile {profile}")
    runs = _execute_all(stale, parameters, project, log) if jobs == 1 or len(stale) < 2 else \
        _execute_parallel(stale, parameters, project, log, jobs)
    log(f"status page written: {status.write_page(project)}")
    if build_html:
        log(f"book built: {build(project)}")
    return runs


def _execute_all(sources: list[Path], parameters: dict, project: Path, log) -> list[dict]:
    runs = []
    for source in sources:
        log(f"executing {source.name} (profile {parameters['profile']})")
        runs.append(execute(source, parameters, project))
        log(f"  done in {runs[-1]['wall_s']:.1f} s")
    return runs


def _execute_share(sources: list[Path], parameters: dict, project: Path, env: dict) -> list[dict]:
    """One worker process's notebooks, in order, with ``env`` set for their kernels."""
    enter_worker_environment(env)
    return [execute(source, parameters, project) for source in sources]


def _execute_parallel(sources: list[Path], parameters: dict, project: Path, log, jobs: int) -> list[dict]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    workers = worker_environments(jobs)
    shares = [sources[i::len(workers)] for i in range(len(workers))]
    log(f"executing {len(sources)} notebooks in {len(workers)} worker processes (profile {parameters['profile']})")
    # spawn, not fork: a forked copy of a process that already runs torch threads can hang.
    with ProcessPoolExecutor(len(workers), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_execute_share, share, parameters, project, env)
                   for share, env in zip(shares, workers) if share]
        runs = [run for future in futures for run in future.result()]
    for run in runs:
        log(f"  {run['notebook']} done in {run['wall_s']:.1f} s")
    return runs
