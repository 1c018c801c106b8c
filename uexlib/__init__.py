"""uexlib: unlearnable examples, the defenses that break them, and a fast trainer to measure both.

One import, a flat API: ``import uexlib as ue``.
"""
from . import generators, models, paper_tables, profiles
from .artifacts import ArtifactError, Poison
from .data import ImageDataset, augment, available, data_root, load_dataset, mix_poison, subset_per_class
from .results import provenance, write_csv
from .runtime import VERSION as __version__
from .runtime import device, git_commit, seed
from .train import StepContext, TrainResult, evaluate, train

__all__ = ["ArtifactError", "ImageDataset", "Poison", "StepContext", "TrainResult", "augment", "available",
           "data_root", "device", "evaluate", "generators", "git_commit", "load_dataset", "mix_poison", "models", "paper_tables",
           "profiles", "provenance", "seed", "subset_per_class", "train", "write_csv", "__version__"]
