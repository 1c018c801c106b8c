"""The two defense interfaces: :class:`Defense` (inside the trainer) and :class:`Purifier` (before it)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # the trainer imports this module; only type hints point back
    from ..artifacts import Poison
    from ..data import ImageDataset
    from ..train import Trainer


@dataclass
class StepContext:
    """What a defense sees at one SGD step."""

    trainer: "Trainer"
    epoch: int
    step: int
    generator: torch.Generator  # seeded per epoch: a defense's random draws are reproducible

    @property
    def model(self) -> torch.nn.Module:
        """The model as the step runs it (compiled when the trainer compiles)."""
        return self.trainer.step_model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of ``x`` under the trainer's autocast and memory format."""
        return self.trainer.forward(x)


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy for hard labels (N,) or soft labels (N, K)."""
    return F.cross_entropy(logits.float(), y)


class Defense:
    """A training-time defense. Override only the parts the method needs.

    * :meth:`transform` maps each augmented float batch ``(x, y)`` (labels may become soft,
      (N, K));
    * :meth:`loss` replaces the training loss and returns ``(loss, logits)`` (adversarial
      training attacks the batch here, under the trainer's autocast);
    * :meth:`attach` may change the model once, when the trainer takes it (dropout);
    * :meth:`param_groups` splits the parameters into groups with an ``lr_factor`` that
      multiplies the schedule (staged training changes the factors in place at epoch ends;
      groups are built once);
    * :meth:`start` sees the trainer and the training set once before the first epoch, and
      :meth:`lr_multiplier` may replace the trainer's schedule (staged training's phases);
    * :meth:`on_epoch_end` computes metrics for the history row (and may roll the model back);
    * :meth:`hold_out` may keep part of the training set back as the defense's own validation
      set, and :meth:`stop` may end training after an epoch (early stopping);
    * :meth:`key` identifies the defense in a checkpoint: resuming under another key is refused;
      :meth:`state_dict` / :meth:`load_state_dict` carry its own state across a resume.

    Subclasses store their constructor arguments in ``self.params``.
    """

    params: dict = {}

    def transform(self, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        return x, y

    def loss(self, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        logits = ctx.forward(x)
        return cross_entropy(logits, y), logits

    def attach(self, model: torch.nn.Module) -> None:
        """Called once by the trainer before it builds the optimizer."""

    def param_groups(self, model: torch.nn.Module) -> list[dict] | None:
        """``[{"params": [...], "lr_factor": 1.0}, ...]``, or None for one group."""
        return None

    def start(self, trainer: "Trainer", train_set: "ImageDataset", seed: int) -> None:
        """Called by :func:`~uexlib.train` once the trainer is built, before a checkpoint is resumed."""

    def lr_multiplier(self, trainer: "Trainer") -> float | None:
        """The schedule's factor at ``trainer.steps_done``; None keeps the trainer's own schedule."""
        return None

    def on_epoch_end(self, trainer: "Trainer", epoch: int) -> dict:
        """Extra history columns for this epoch (numbers, short strings or tuples of numbers)."""
        return {}

    def hold_out(self, train_set: "ImageDataset", seed: int) -> tuple["ImageDataset", "ImageDataset | None"]:
        """The set to train on and a validation set held out of it (None: nothing held out)."""
        return train_set, None

    def stop(self, history: list[dict]) -> bool:
        """After each epoch's row is complete (with ``val_acc`` when there is a validation set)."""
        return False

    def key(self) -> dict:
        return {"defense": type(self).__name__, "params": dict(self.params)}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state but the checkpoint holds {sorted(state)}")


class Purifier:
    """A purification defense: :meth:`fit` on a training set, then :meth:`purify` any set.

    :meth:`apply` does both on a training set or a :class:`~uexlib.artifacts.Poison`. Purifiers
    that need no model of their own keep the default :meth:`fit`. The result is a new
    :class:`~uexlib.data.ImageDataset` with the same labels; inputs are never modified.
    """

    params: dict = {}

    def fit(self, train_set: "ImageDataset") -> "Purifier":
        return self

    def unavailable(self, train_set: "ImageDataset") -> str | None:
        """Why this purifier cannot run on ``train_set`` (checked before any work), or None."""
        return None

    def purify(self, dataset: "ImageDataset") -> "ImageDataset":
        raise NotImplementedError(f"{type(self).__name__} does not implement purify()")

    def apply(self, data: "ImageDataset | Poison") -> "ImageDataset":
        dataset = data.as_dataset() if hasattr(data, "as_dataset") else data
        return self.fit(dataset).purify(dataset)

    def key(self) -> dict:
        return {"purifier": type(self).__name__, "params": dict(self.params)}


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] to uint8, rounded to the nearest level."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def map_images(images: torch.Tensor, fn, chunk: int = 4096) -> torch.Tensor:
    """``fn`` (float batch in [0, 1] -> float batch) over uint8 ``images``, in chunks; uint8 out."""
    out = torch.empty_like(images)
    for start in range(0, len(images), chunk):
        out[start:start + chunk] = to_uint8(fn(images[start:start + chunk].float() / 255))
    return out


def draw_seed(gen: torch.Generator | None, device: torch.device) -> int:
    """One integer seed from ``gen``: for samplers that take no generator (numpy, kornia)."""
    return int(torch.randint(0, 2**62, (1,), device=device, generator=gen).item())


@contextlib.contextmanager
def global_rng_from(gen: torch.Generator | None, device: torch.device):
    """Run the block with torch's global generators seeded from ``gen``, restored afterwards.

    kornia draws from the global generators; seeding them from the step's generator keeps a
    defense built on kornia reproducible and its draws independent of everything else.
    """
    seed = draw_seed(gen, device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield
