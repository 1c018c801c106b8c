"""Run one notebook over a grid of parameters: ``uex sweep GRID.yaml [--address RAY]``.

A grid file names the notebook, its fixed parameters and the lists to cross::

    notebook: em_basics          # a notebook of notebooks/ (name or file name)
    profile: lab                 # passed to every run, like ``uex run --profile``
    parameters: {seed: 0}        # the same in every run
    grid:                        # every combination of these lists
      eps: [2/255, 4/255, 8/255]
      mode: [samplewise, classwise]
    output: sweeps/em_eps        # default: sweeps/<grid file name>, beside the grid file
    workers: 2                   # local processes; default one per GPU, else one per 2 CPU cores

Strings parse like ``uex run -p`` values, so ``2/255`` is a number. Each run executes with
papermill into ``<output>/<run id>/<notebook>.ipynb`` (the id is a hash of its parameters), with its
results tables beside it; a run whose executed notebook already records the same source,
parameters and uexlib code is skipped, so a sweep that was interrupted resumes where it stopped
(an executed notebook only appears once its run has finished). At the end every run's rows are
collected into ``<output>/rows.csv``: the results schema plus ``run`` and ``parameters``.

Runs go to local worker processes by default (each CPU worker gets its share of the cores;
each GPU worker one GPU through ``CUDA_VISIBLE_DEVICES``); with ``address`` they go to a Ray
cluster as tasks (``pip install uexlib[ray]``), each asking for one GPU when the cluster has
them, else for ``cpus_per_run`` CPUs.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import profiles
from .book import execute, find_notebook, is_finished
from .cli import parse_value
from .results import SCHEMA
from .runtime import REPO_ROOT, atomic_path, enter_worker_environment, worker_environments

_KEYS = {"notebook", "profile", "parameters", "grid", "output", "workers"}


@dataclass(frozen=True)
class Sweep:
    """A parsed grid file: the notebook, the runs' parameters and where they go."""

    source: Path
    runs: tuple[dict, ...]
    output: Path
    workers: int | None

    def run_dir(self, parameters: dict) -> Path:
        key = json.dumps(parameters, sort_keys=True, default=str)
        return self.output / hashlib.sha256(key.encode()).hexdigest()[:12]

    def target(self, parameters: dict) -> Path:
        return self.run_dir(parameters) / self.source.name

    def pending(self) -> list[dict]:
        """The runs without a finished execution of this source, parameters and code."""
        return [p for p in self.runs if not is_finished(self.target(p), self.source, p)]


def _parse(value):
    if isinstance(value, str):
        return parse_value(value)
    if isinstance(value, list):
        return [_parse(v) for v in value]
    return value


def load(path: str | os.PathLike, project: Path = REPO_ROOT) -> Sweep:
    """Read and check a grid file; every mistake is a one-line ValueError naming the key."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"grid file {path} does not exist")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"grid file {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"grid file {path} must hold a mapping with keys {', '.join(sorted(_KEYS))}")
    unknown = set(spec) - _KEYS
    if unknown:
        raise ValueError(f"grid file {path}: unknown key(s) {sorted(unknown)}; allowed: {', '.join(sorted(_KEYS))}")
    if "notebook" not in spec:
        raise ValueError(f"grid file {path}: 'notebook' is required")
    source = find_notebook(str(spec["notebook"]), project)
    fixed = spec.get("parameters") or {}
    grid = spec.get("grid") or {}
    if not isinstance(fixed, dict) or not isinstance(grid, dict):
        raise ValueError(f"grid file {path}: 'parameters' and 'grid' must be mappings of name to value(s)")
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"grid file {path}: grid '{name}' must be a non-empty list, got {values!r}")
    overlap = set(fixed) & set(grid)
    if overlap:
        raise ValueError(f"grid file {path}: {sorted(overlap)} both fixed and in the grid")
    base = {k: _parse(v) for k, v in fixed.items()}
    if "profile" in spec:
        profiles.get(spec["profile"])
        base["profile"] = spec["profile"]
    names = list(grid)
    runs = tuple({**base, **dict(zip(names, combo))}
                 for combo in itertools.product(*([_parse(v) for v in grid[n]] for n in names)))
    workers = spec.get("workers")
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise ValueError(f"grid file {path}: workers must be an integer >= 1, got {workers!r}")
    output = Path(spec.get("output") or Path("sweeps") / path.stem)
    output = output if output.is_absolute() else path.parent / output
    return Sweep(source=source, runs=runs, output=output, workers=workers)


def _run_one(source: str, parameters: dict, target: str, env: dict) -> dict:
    """Execute one run (in a worker process or a Ray task) with ``env`` set for its kernel."""
    enter_worker_environment(env)
    return execute(Path(source), parameters, target=Path(target))


def _run_share(jobs: list[tuple[str, dict, str]], env: dict) -> list[dict]:
    return [_run_one(source, parameters, target, env) for source, parameters, target in jobs]


def run(sweep: Sweep, address: str | None = None, cpus_per_run: int = 2, log=print) -> pd.DataFrame:
    """Execute the pending runs of ``sweep`` (locally, or on the Ray cluster at ``address``), then collect."""
    pending = sweep.pending()
    log(f"{sweep.source.stem}: {len(sweep.runs)} runs, {len(sweep.runs) - len(pending)} already done, "
        f"{len(pending)} to run")
    jobs = [(str(sweep.source), p, str(sweep.target(p))) for p in pending]
    if jobs and address:
        _run_on_ray(jobs, address, cpus_per_run, log)
    elif jobs:
        workers = worker_environments(sweep.workers)
        shares = [jobs[i::len(workers)] for i in range(len(workers))]
        # spawn, not fork: a forked copy of a process that already runs torch threads can hang.
        with ProcessPoolExecutor(max_workers=len(workers), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_run_share, share, env) for share, env in zip(shares, workers) if share]
            for future in futures:
                for done in future.result():
                    log(f"  {Path(done['output']).parent.name}: {done['wall_s']:.1f} s")
    return collect(sweep)


def _run_on_ray(jobs: list[tuple[str, dict, str]], address: str, cpus_per_run: int, log) -> None:
    try:
        import ray
    except ImportError:
        raise ValueError("--address needs Ray: pip install 'uexlib[ray]'") from None
    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        env = {} if gpus else {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": str(cpus_per_run)}
        task = ray.remote(num_gpus=1 if gpus else 0, num_cpus=0 if gpus else cpus_per_run)(_run_one)
        for done in ray.get([task.remote(source, parameters, target, env) for source, parameters, target in jobs]):
            log(f"  {Path(done['output']).parent.name}: {done['wall_s']:.1f} s (ray)")
    finally:
        ray.shutdown()


def collect(sweep: Sweep) -> pd.DataFrame:
    """Every finished run's rows in one table (``<output>/rows.csv``): the schema plus run and parameters."""
    frames = []
    for parameters in sweep.runs:
        folder = sweep.run_dir(parameters)
        if not is_finished(sweep.target(parameters), sweep.source, parameters):
            continue
        for path in sorted(folder.glob("*.csv")):
            rows = pd.read_csv(path)
            rows["run"] = folder.name
            rows["parameters"] = json.dumps(parameters, sort_keys=True, default=str)
            frames.append(rows)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*SCHEMA, "run", "parameters"])
    sweep.output.mkdir(parents=True, exist_ok=True)
    with atomic_path(sweep.output / "rows.csv") as tmp:
        table.to_csv(tmp, index=False)
    return table
