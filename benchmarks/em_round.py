"""Wall time of one EM round at full scale: the cost unit of every EM poison.

One round of the alternate loop (thesis Alg. 1) is ``train_steps`` (10) surrogate SGD steps, one
PGD pass of ``--steps`` steps over every image, and the stopping-rule accuracy pass. This runs
exactly one (``max_rounds=1``, ``stop_error=0``) and appends
``date,device,torch,mode,pgd_steps,images,round_s,git_commit`` to
``benchmarks/results/em_round.csv``, where ``round_s`` is the round's own ``wall_s`` from the
poison's history (data loading and surrogate construction excluded). It is a first round, so it
includes one-off warm-up costs, as every EM run pays them.

    python benchmarks/em_round.py                                                      # GPU
    python benchmarks/em_round.py --per-class 100 --surrogate cnn --width 0.25 --steps 5   # CPU
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

import uexlib as ue

from _bench import RESULTS, append_rows, device_label, now_utc

COLUMNS = ["date", "device", "torch", "mode", "pgd_steps", "images", "round_s", "git_commit"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("samplewise", "classwise"), default="samplewise")
    parser.add_argument("--steps", type=int, default=20, help="PGD steps per noise update (thesis A.2: 20)")
    parser.add_argument("--per-class", type=int, default=None,
                        help="training images per class (default all 5,000; pass fewer on a CPU)")
    parser.add_argument("--surrogate", default="resnet18")
    parser.add_argument("--width", type=float, default=1.0, help="channel multiplier of the surrogate")
    parser.add_argument("--pgd-batch", type=int, default=512, help="images per PGD batch")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--root", help="dataset root (default $UEX_DATA_ROOT)")
    parser.add_argument("--out", type=Path, default=RESULTS / "em_round.csv", help="CSV the row is appended to")
    args = parser.parse_args()

    dev = ue.device(args.device)
    train_set = ue.load_dataset("cifar10", "train", args.root, per_class=args.per_class)
    generator = ue.generators.create("em", mode=args.mode, steps=args.steps, max_rounds=1, stop_error=0.0,
                                     train_steps=10, surrogate=args.surrogate, surrogate_width=args.width,
                                     pgd_batch_size=args.pgd_batch, device=str(dev), progress=True)
    poison = generator.generate(train_set)
    round_s = poison.metadata["history"][0]["wall_s"]

    row = {"date": now_utc(), "device": device_label(dev), "torch": torch.__version__, "mode": args.mode,
           "pgd_steps": args.steps, "images": len(train_set), "round_s": round(round_s, 2),
           "git_commit": ue.git_commit()}
    append_rows(args.out, COLUMNS, [row])
    print(f"EM {args.mode}, {args.surrogate} (width {args.width}), {len(train_set)} images of {train_set.source}, "
          f"{args.steps} PGD steps, PGD batch {args.pgd_batch}, {row['device']}")
    print(f"  one round: {round_s:.2f} s")
    print(f"appended 1 row to {args.out}")


if __name__ == "__main__":
    main()
