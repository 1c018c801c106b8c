"""The ``uex`` command: data, train, poison, defend, run, book, sweep, status.

Every command checks its arguments first.
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

from . import profiles


_ARITHMETIC = (ast.Expression, ast.Constant, ast.List, ast.Tuple, ast.BinOp, ast.UnaryOp, ast.Div, ast.Mult,
               ast.Add, ast.Sub, ast.USub, ast.Load)


def parse_value(text: str):
    """``-p`` values as Python literals where they parse, with arithmetic (``8/255``, ``[0, 2/255]``),
    else strings."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return text
    if all(isinstance(node, _ARITHMETIC) for node in ast.walk(tree)):
        try:
            return eval(compile(tree, "<-p>", "eval"), {"__builtins__": {}})  # numbers and lists only
        except (ArithmeticError, TypeError):
            pass
    return text


def _params(pairs: list[list[str]] | None) -> dict:
    return {key: parse_value(value) for key, value in (pairs or [])}


def cmd_data(args) -> int:
    from .data import available, data_root

    print(f"dataset root: {data_root(args.root)}  (set with --root or UEX_DATA_ROOT)")
    for row in available(args.root):
        where = "parquet (no download)" if row["parquet"] else "torchvision download" if row["torchvision_download"] else "imagefolder"
        print(f"  {row['name']:<16} {where}")
    return 0


def _experiment(args):
    from .experiment import prepare

    return prepare(args.profile, dataset=args.dataset, root=args.root, seed=args.seed)


def _seeded(args, params: dict) -> dict:
    """``--seed`` is the seed unless ``-p seed N`` says the same or the flag was left at its default."""
    if "seed" in params and args.seed not in (0, params["seed"]):
        raise ValueError(f"--seed {args.seed} and -p seed {params['seed']} disagree; give one")
    return {"seed": args.seed, **params}


def _check_model(name: str | None) -> None:
    from . import models

    if name is not None and name not in models.list_models():
        raise ValueError(f"--model must be one of {', '.join(models.list_models())}; got {name!r}")


def _train_and_report(args, make_defense=None) -> int:
    """Train the profile's model (or ``--model``) on the clean set or ``--poison``, under the defense
    or on the purifier's output that ``make_defense(exp)`` returns as ``(defense, purifier)``;
    print and optionally save the history."""
    from .artifacts import Poison
    from .results import provenance, write_csv

    _check_model(args.model)
    if args.poison and not Path(args.poison).is_file():
        raise ValueError(f"--poison {args.poison} does not exist")
    exp = _experiment(args)
    defense, purifier = make_defense(exp) if make_defense is not None else (None, None)
    train_set = Poison.load(args.poison, dataset=exp.train_set).as_dataset() if args.poison else exp.train_set
    if purifier is not None:
        train_set = purifier.apply(train_set)
    overrides = {"epochs": args.epochs} if args.epochs else {}
    if getattr(args, "checkpoint", None):
        overrides["checkpoint"] = args.checkpoint
    result = exp.train(train_set, defense=defense, model=exp.model(args.model), **overrides)
    history = result.history.assign(**provenance(args.profile, args.seed), data=train_set.source,
                                    defense=getattr(args, "method", None) or "none")
    print(history[["epoch", "train_acc", "test_acc"]].to_string(index=False))
    if args.out:
        write_csv(history, args.out)
    return 0


def cmd_train(args) -> int:
    return _train_and_report(args)


def cmd_poison(args) -> int:
    from . import generators

    if args.list:
        print(generators.GENERATORS.format_list())
        return 0
    if args.method is None:
        raise ValueError("give a generator name (one of " + ", ".join(generators.list_generators()) + ") or --list")
    generators.GENERATORS.get(args.method)
    if args.out is None or Path(args.out).suffix != ".npz":
        raise ValueError(f"--out must be a path ending in .npz, got {args.out}")
    given = _params(args.param)
    params = _seeded(args, given)
    if "seed" not in generators.GENERATORS.defaults(args.method) and "seed" not in given:
        params.pop("seed")                                  # a generator without randomness (ops)
    generator = generators.create(args.method, profile=args.profile, **params)  # checks every parameter first
    exp = _experiment(args)
    poison = generator.generate(exp.train_set)
    poison.save(args.out)
    print(f"saved {args.out} ({poison.metadata['method']}, seed {poison.metadata['seed']}, "
          f"{poison.metadata['wall_s']:.1f} s)")
    if args.publish:
        print(f"published PNG folder {poison.publish(args.publish)}")
    return 0


def cmd_defend(args) -> int:
    from . import defenses

    if args.list:
        print("training-time defenses:")
        print(defenses.DEFENSES.format_list())
        print("purifiers:")
        print(defenses.PURIFIERS.format_list())
        return 0
    if args.method is None:
        raise ValueError("give a defense name or --list")
    params = _params(args.param)
    if args.method not in defenses.DEFENSES and args.method not in defenses.PURIFIERS:
        raise ValueError(f"unknown defense {args.method!r}; available: "
                         f"{', '.join(defenses.names() + defenses.purifier_names())}")
    # The profile's settings for the method (e.g. lab's PGD steps, its VAE epochs), overridden by -p;
    # checked before any data are read.
    fixed = profiles.get(args.profile).defenses.get(args.method, {})
    registry = defenses.DEFENSES if args.method in defenses.DEFENSES else defenses.PURIFIERS
    registry.check_params(args.method, {**fixed, **params})
    if registry is defenses.DEFENSES:
        return _train_and_report(args, lambda exp: (exp.defense(args.method, **params), None))
    return _train_and_report(args, lambda exp: (None, exp.purifier(args.method, **params)))


def cmd_run(args) -> int:
    from .book import execute, find_notebook

    source = find_notebook(args.notebook)
    parameters = _params(args.param)
    if args.profile:
        profiles.get(args.profile)
        parameters["profile"] = args.profile
    run = execute(source, parameters, target=Path(args.output) / source.name if args.output else None)
    print(f"{run['output']} ({run['wall_s']:.1f} s)")
    return 0


def cmd_book(args) -> int:
    from .book import run_book

    project = Path(args.project).resolve()
    if not (project / "_config.yml").is_file():
        raise ValueError(f"--project {project} holds no _config.yml")
    run_book(args.profile, project=project, force=args.force, build_html=not args.no_build, jobs=args.jobs)
    return 0


def cmd_sweep(args) -> int:
    from .sweep import load, run

    if args.cpus_per_run < 1:
        raise ValueError(f"--cpus-per-run must be >= 1, got {args.cpus_per_run}")
    sweep = load(args.grid, Path(args.project).resolve())
    table = run(sweep, address=args.address, cpus_per_run=args.cpus_per_run)
    print(f"{sweep.output / 'rows.csv'}: {len(table)} rows from {table['run'].nunique()} runs")
    return 0


def cmd_status(args) -> int:
    from .status import write_page

    project = Path(args.project).resolve()
    if not (project / "data" / "reproduction_plan.csv").is_file():
        raise ValueError(f"--project {project} holds no data/reproduction_plan.csv")
    print(write_page(project))
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="uex", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    profile_kw = {"default": "lab", "choices": profiles.names(), "help": "compute profile (default lab)"}

    data = sub.add_parser("data", help="which datasets are available where")
    data.add_argument("--root", help="dataset root (default $UEX_DATA_ROOT)")
    data.set_defaults(func=cmd_data)

    for name, func, text in (("train", cmd_train, "train a classifier on clean or poisoned data"),
                             ("poison", cmd_poison, "generate a poison and save it"),
                             ("defend", cmd_defend, "train under a defense (or on a purified set), clean or poisoned")):
        cmd = sub.add_parser(name, help=text)
        if name != "train":
            cmd.add_argument("method", nargs="?", help=f"{'generator' if name == 'poison' else 'defense'} name")
            cmd.add_argument("--list", action="store_true", help="list every method with its defaults")
            cmd.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                             help="method parameter, e.g. -p eps 8/255 -p mode classwise")
        cmd.add_argument("--dataset", default="cifar10", help="dataset name or folder")
        cmd.add_argument("--root", help="dataset root (default $UEX_DATA_ROOT)")
        cmd.add_argument("--profile", **profile_kw)
        cmd.add_argument("--seed", type=int, default=0, help="seeds the data subset, the method and the model")
        cmd.set_defaults(func=func)
        if name == "poison":
            cmd.add_argument("--out", help="poison file (.npz)")
            cmd.add_argument("--publish", help="also write the poisoned images as PNGs into this new folder")
        else:
            cmd.add_argument("--model", help="model name (default: the profile's)")
            cmd.add_argument("--epochs", type=int, help="override the profile's budget")
            cmd.add_argument("--poison", help="a saved poison (.npz) to train on")
            cmd.add_argument("--out", help="write the history CSV here")
        if name == "train":
            cmd.add_argument("--checkpoint", help="checkpoint file to resume from")

    run = sub.add_parser("run", help="execute one notebook with papermill")
    run.add_argument("notebook")
    run.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"))
    run.add_argument("--profile", choices=profiles.names())
    run.add_argument("--output", help="folder for the executed notebook (default book/runs)")
    run.set_defaults(func=cmd_run)

    book = sub.add_parser("book", help="execute stale notebooks for a profile, then build the HTML book")
    book.add_argument("--profile", **profile_kw)
    book.add_argument("--project", default=".", help="project folder holding _config.yml (default .)")
    book.add_argument("--force", action="store_true", help="re-execute every notebook")
    book.add_argument("--no-build", action="store_true", help="execute only, do not build HTML")
    book.add_argument("--jobs", type=int, default=1,
                      help="notebooks run at once, sharing the CPU threads (default 1; numbers depend on threads)")
    book.set_defaults(func=cmd_book)

    sweep = sub.add_parser("sweep", help="run a notebook over a grid of parameters (GRID.yaml), skipping finished runs")
    sweep.add_argument("grid", help="grid file: notebook, profile, parameters, grid, output, workers")
    sweep.add_argument("--address", help="Ray cluster address (e.g. 127.0.0.1:6379 or auto); default: local processes")
    sweep.add_argument("--cpus-per-run", type=int, default=2, help="CPUs a Ray task asks for on a cluster without GPUs")
    sweep.add_argument("--project", default=".", help="project folder holding notebooks/ (default .)")
    sweep.set_defaults(func=cmd_sweep)

    status = sub.add_parser("status", help="rewrite the book's reproduction-status page from the results tables")
    status.add_argument("--project", default=".", help="project folder (default .)")
    status.set_defaults(func=cmd_status)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "seed", 0) < 0:
        parser().error(f"--seed must be >= 0, got {args.seed}")
    from .book import NotebookFailed

    try:
        return args.func(args)
    except (ValueError, KeyError, TypeError, FileNotFoundError, NotebookFailed) as error:
        # A notebook's own error (a bad -p value it rejects) is one line too; its traceback stays in the
        # partial output the message names.
        print(f"uex {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
