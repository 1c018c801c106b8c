"""Execute the parameterized notebooks with papermill and build the Jupyter Book (1.x).

Executed notebooks land in ``book/runs/<name>.ipynb`` (kernel working directory ``book/runs``)
with a ``uex`` metadata block: profile, parameters, the source notebook's sha256 and the commit.
A run is stale when that block no longer matches what would be executed now.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import profiles
from .runtime import REPO_ROOT, git_commit


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


def run_record(source: Path, parameters: dict) -> dict:
    return {"source_sha256": _sha256(source), "parameters": parameters}


def is_stale(source: Path, parameters: dict, project: Path = REPO_ROOT) -> bool:
    """True unless ``book/runs`` holds a successful run of this exact source with these parameters."""
    target = output_path(source, project)
    if not target.is_file():
        return True
    # Only a fully successful run is ever renamed into place (see execute), so the record suffices.
    recorded = json.loads(target.read_text()).get("metadata", {}).get("uex", {})
    return {k: recorded.get(k) for k in ("source_sha256", "parameters")} != run_record(source, parameters)


def execute(source: Path, parameters: dict, project: Path = REPO_ROOT, target: Path | None = None,
            progress: bool = False) -> dict:
    """Run ``source`` with papermill into ``target`` (default ``book/runs/<name>.ipynb``).

    Raises :class:`NotebookFailed` on any cell error. The executed notebook replaces the previous
    one only when every cell succeeded; the kernel runs in the target's folder.
    """
    import nbformat
    import papermill

    target = Path(target) if target is not None else output_path(source, project)
    # The "python3" kernel spec runs whatever `python` is first on PATH: make it this interpreter.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.stem}.partial.ipynb")
    started = time.perf_counter()
    try:
        papermill.execute_notebook(str(source), str(partial), parameters=parameters, cwd=str(target.parent),
                                   kernel_name="python3", progress_bar=progress, log_output=False)
    except papermill.PapermillExecutionError as error:
        raise NotebookFailed(f"{source.name} failed in cell {error.exec_count}: {error.ename}: {error.evalue}; "
                             f"partial output kept in {partial}") from error
    wall_s = time.perf_counter() - started
    notebook = nbformat.read(partial, as_version=4)
    notebook.metadata["uex"] = {**run_record(source, parameters), "wall_s": round(wall_s, 1),
                                "git_commit": git_commit()}
    nbformat.write(notebook, partial)
    os.replace(partial, target)
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
             log=print) -> list[dict]:
    """Execute every stale notebook under ``profile``, then build the book."""
    profiles.get(profile)
    if shutil.which("jupyter-book") is None and not Path(sys.executable).with_name("jupyter-book").exists():
        raise RuntimeError("jupyter-book is not installed; install the project with its book extras")
    runs = []
    for source in notebooks(project):
        parameters = {"profile": profile}
        if force or is_stale(source, parameters, project):
            log(f"executing {source.name} (profile {profile})")
            runs.append(execute(source, parameters, project))
            log(f"  done in {runs[-1]['wall_s']:.1f} s")
        else:
            log(f"{source.name}: up to date for profile {profile}")
    if build_html:
        log(f"book built: {build(project)}")
    return runs
