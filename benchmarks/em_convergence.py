"""EM's surrogate error per round with and without augmenting the surrogate's poisoned batches.

The measurement behind EM's ``augment="none"`` default (issue 5): a surrogate trained on
crop+flip-augmented poisoned batches cannot fit per-image noise that PGD optimizes on the
un-augmented image, and the thesis' Alg. 1 loop stalls. Each setting prints its error per round
and, with ``--victim``, the clean test accuracy of the profile's model trained on the poison.
Rows are appended to ``benchmarks/results/em_convergence.csv``.

    python benchmarks/em_convergence.py --per-class 100 --surrogate resnet18 --width 0.25 --rounds 10
    python benchmarks/em_convergence.py --profile lab --rounds 8 --victim --seed 1
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import uexlib as ue
from _bench import RESULTS, append_rows, device_label, now_utc

COLUMNS = ["date", "device", "torch", "profile", "surrogate", "images", "augment", "seed", "round_errors",
           "victim_test_acc", "generation_s", "git_commit"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="lab", help="data scale and victim (default lab)")
    parser.add_argument("--per-class", type=int, help="training images per class (default: the profile's)")
    parser.add_argument("--surrogate", help="surrogate model (default: the profile's)")
    parser.add_argument("--width", type=float, help="surrogate width (default: the profile's)")
    parser.add_argument("--steps", type=int, default=10, help="PGD steps per noise update")
    parser.add_argument("--rounds", type=int, default=8, help="at most this many rounds")
    parser.add_argument("--augments", nargs="+", default=["none", "crop_flip"])
    parser.add_argument("--victim", action="store_true", help="also train the profile's model on each poison")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch CPU threads (results depend on it)")
    parser.add_argument("--root", help="dataset root (default $UEX_DATA_ROOT)")
    parser.add_argument("--out", default=str(RESULTS / "em_convergence.csv"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    profile = ue.profiles.get(args.profile, **({"train_per_class": args.per_class} if args.per_class else {}))
    exp = ue.prepare(profile, root=args.root, seed=args.seed)
    surrogate = {k: v for k, v in (("surrogate", args.surrogate), ("surrogate_width", args.width)) if v}
    rows = []
    for augment in args.augments:
        started = time.perf_counter()
        poison = exp.generator("em", augment=augment, steps=args.steps, max_rounds=args.rounds,
                               progress=False, **surrogate).generate(exp.train_set)
        generation_s = round(time.perf_counter() - started, 1)
        errors = [round(r["train_error"], 4) for r in poison.metadata["history"]]
        victim = round(exp.train(poison.as_dataset(), progress=False).test_acc, 2) if args.victim else ""
        rows.append({"date": now_utc(), "device": device_label(torch.device("cpu")), "torch": torch.__version__,
                     "profile": profile.name, "surrogate": poison.metadata["surrogate"], "images": len(exp.train_set),
                     "augment": augment, "seed": args.seed, "round_errors": json.dumps(errors),
                     "victim_test_acc": victim, "generation_s": generation_s,
                     "git_commit": ue.git_commit()})
        print(f"augment={augment}: error per round {errors}" + (f", victim {victim} %" if args.victim else ""))
    append_rows(Path(args.out), COLUMNS, rows)


if __name__ == "__main__":
    main()
