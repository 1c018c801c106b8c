"""uexlib: unlearnable examples, the defenses that break them, and a fast trainer to measure both.

One import, a flat API: ``import uexlib as ue``.
"""
from . import acm, attacks, cost, defenses, generators, models, paper_tables, profiles, quality, store
from .artifacts import ArtifactError, Poison, check_budget
from .data import ImageDataset, augment, available, data_root, load_dataset, mix_poison, subset_per_class
from .experiment import Experiment, prepare
from .registry import ParameterError, UnknownNameError
from .results import load_results, provenance, result_row, side_by_side, table, write_csv, write_results
from .runtime import VERSION as __version__
from .runtime import device, git_commit, seed
from .train import TrainResult, Trainer, evaluate, train

__all__ = ["ArtifactError", "Experiment", "ImageDataset", "ParameterError", "Poison", "TrainResult",
           "Trainer", "UnknownNameError", "acm", "attacks", "augment", "available", "check_budget", "cost",
           "data_root", "defenses", "device", "evaluate", "generators", "git_commit", "load_dataset",
           "load_results", "mix_poison", "models", "paper_tables", "prepare", "profiles", "provenance",
           "quality", "result_row", "seed", "side_by_side", "store", "subset_per_class", "table", "train",
           "write_csv", "write_results", "__version__"]
