"""The ``uex`` command: data, train, poison, run, book. Every command checks its arguments first."""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

from . import profiles


def _value(text: str):
    """``-p`` values as Python literals where they parse (8/255 too), else strings."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if "/" in text:
            num, _, den = text.partition("/")
            try:
                return float(num) / float(den)
            except ValueError:
                pass
        return text


def _params(pairs: list[list[str]] | None) -> dict:
    return {key: _value(value) for key, value in (pairs or [])}


def cmd_data(args) -> int:
    from .data import available, data_root

    print(f"dataset root: {data_root(args.root)}  (set with --root or UEX_DATA_ROOT)")
    for row in available(args.root):
        where = "parquet (no download)" if row["parquet"] else "torchvision download" if row["torchvision_download"] else "imagefolder"
        print(f"  {row['name']:<16} {where}")
    return 0


def _datasets(args, profile):
    from .data import load_dataset

    train_set = load_dataset(args.dataset, "train", args.root, per_class=profile.train_per_class)
    test_set = load_dataset(args.dataset, "test", args.root, per_class=profile.test_per_class)
    return train_set, test_set


def cmd_train(args) -> int:
    import torch

    from . import models
    from .artifacts import Poison
    from .results import provenance, write_csv
    from .train import train

    profile = profiles.get(args.profile)
    model_name = args.model or profile.model
    if model_name not in models.list_models():
        raise ValueError(f"--model must be one of {', '.join(models.list_models())}; got {model_name!r}")
    if args.poison and not Path(args.poison).is_file():
        raise ValueError(f"--poison {args.poison} does not exist")
    train_set, test_set = _datasets(args, profile)
    if args.poison:
        train_set = Poison.load(args.poison, expect=train_set).as_dataset()
    torch.manual_seed(args.seed)
    model = models.create(model_name, train_set.num_classes, train_set.shape[0], profile.width)
    budget = {**profile.budget(), **({"epochs": args.epochs, "iterations": None} if args.epochs else {})}
    result = train(model, train_set, test_set, seed=args.seed, checkpoint=args.checkpoint, **budget)
    history = result.history.assign(**provenance(args.profile, args.seed), data=train_set.source)
    print(history[["epoch", "train_acc", "test_acc"]].to_string(index=False))
    if args.out:
        write_csv(history, args.out)
    return 0


def cmd_poison(args) -> int:
    from . import generators

    profile = profiles.get(args.profile)
    if args.method not in generators.list_generators():
        raise ValueError(f"--method must be one of {', '.join(generators.list_generators())}; got {args.method!r}")
    if Path(args.out).suffix != ".npz":
        raise ValueError(f"--out must end in .npz, got {args.out}")
    generator = generators.create(args.method, profile=profile, **_params(args.param))
    train_set, _ = _datasets(args, profile)
    poison = generator.generate(train_set)
    poison.save(args.out)
    print(f"saved {args.out} ({poison.metadata['method']}, {poison.metadata['wall_s']:.1f} s)")
    if args.publish:
        print(f"published PNG folder {poison.publish(args.publish)}")
    return 0


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
    run_book(args.profile, project=project, force=args.force, build_html=not args.no_build)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="uex", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    profile_kw = {"default": "lab", "choices": profiles.names(), "help": "compute profile (default lab)"}

    data = sub.add_parser("data", help="which datasets are available where")
    data.add_argument("--root", help="dataset root (default $UEX_DATA_ROOT)")
    data.set_defaults(func=cmd_data)

    for name, func, text in (("train", cmd_train, "train a classifier on clean or poisoned data"),
                             ("poison", cmd_poison, "generate a poison and save it")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--dataset", default="cifar10", help="dataset name or folder")
        cmd.add_argument("--root", help="dataset root (default $UEX_DATA_ROOT)")
        cmd.add_argument("--profile", **profile_kw)
        cmd.add_argument("--seed", type=int, default=0)
        cmd.set_defaults(func=func)
        if name == "train":
            cmd.add_argument("--model", help="model name (default: the profile's)")
            cmd.add_argument("--epochs", type=int, help="override the profile's budget")
            cmd.add_argument("--poison", help="a saved poison (.npz) to train on")
            cmd.add_argument("--checkpoint", help="checkpoint file to resume from")
            cmd.add_argument("--out", help="write the history CSV here")
        else:
            cmd.add_argument("--method", default="em")
            cmd.add_argument("--out", required=True, help="poison file (.npz)")
            cmd.add_argument("--publish", help="also write the poisoned images as PNGs into this new folder")
            cmd.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                             help="generator parameter, e.g. -p eps 8/255 -p mode classwise")

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
    book.set_defaults(func=cmd_book)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "seed", 0) < 0:
        parser().error(f"--seed must be >= 0, got {args.seed}")
    try:
        return args.func(args)
    except (ValueError, KeyError, FileNotFoundError) as error:
        print(f"uex {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
