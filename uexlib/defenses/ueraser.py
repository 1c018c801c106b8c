"""UEraser (Qin et al., 2023, "Learning the unlearnable: adversarial augmentations suppress
unlearnable example attacks"); the D-VAE paper's "AA" column.

Every training image is augmented ``repeats`` (K) times by a strong, label-preserving pipeline:
plasma brightness, plasma contrast, channel shuffle, then one TrivialAugment operation (after the
trainer's crop and flip). The loss of an image is the largest of its K losses (error-maximizing
augmentation), averaged over the batch. This holds for the first ``adversarial_epochs`` (W)
epochs; afterwards each image is augmented once. UEraser-Lite is ``adversarial_epochs=0``,
UEraser-Max ``adversarial_epochs=None`` (every epoch).

Settings taken from the authors' public code, since the paper's method section could not be
consulted here: K = 5 and W = 50 of 200 epochs; plasma roughness 0.3-0.7, brightness intensity
0.5-1.0; each of the three colour operations with probability 0.5 (the authors' library default;
their notebooks use 1.0 for the plasma steps). kornia draws one TrivialAugment operation per batch;
here each image draws its own.
"""
from __future__ import annotations

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from kornia.augmentation.auto import TrivialAugment
from kornia.augmentation.auto.trivial_augment.trivial_augment import default_policy

from ..runtime import check_float, check_int
from . import DEFENSES
from .autoaugment import per_image
from .base import Defense, StepContext, global_rng_from


@DEFENSES.register("ueraser", "UEraser: worst of K strong augmentations per image (Qin et al. 2023; D-VAE's AA)")
class UEraser(Defense):
    """Train on the worst of ``repeats`` strong augmentations of each image (first ``adversarial_epochs``).

    Args:
        repeats: K, augmented views per image whose largest loss is trained on (5).
        adversarial_epochs: W, epochs with the K-view maximum (50 of the authors' 200); 0 is
            UEraser-Lite, None every epoch (UEraser-Max).
        p: probability of each of plasma brightness, plasma contrast and channel shuffle (0.5).
    """

    def __init__(self, repeats: int = 5, adversarial_epochs: int | None = 50, p: float = 0.5):
        check_int("repeats", repeats, low=1)
        if adversarial_epochs is not None:
            check_int("adversarial_epochs", adversarial_epochs, low=0)
        check_float("p", p, 0.0, 1.0)
        self.params = {"repeats": repeats, "adversarial_epochs": adversarial_epochs, "p": p}
        self._colour = K.AugmentationSequential(
            K.RandomPlasmaBrightness(roughness=(0.3, 0.7), intensity=(0.5, 1.0), p=p),
            K.RandomPlasmaContrast(roughness=(0.3, 0.7), p=p),
            K.RandomChannelShuffle(p=p))
        self._trivial = [TrivialAugment(policy=[operation]) for operation in default_policy]

    def augment(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """One strong augmentation of every image (call under :func:`global_rng_from`)."""
        return per_image(self._colour(x.contiguous()).clamp(0, 1), self._trivial, gen)

    def loss(self, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.params
        adversarial = p["adversarial_epochs"] is None or ctx.epoch < p["adversarial_epochs"]
        k = p["repeats"] if adversarial else 1
        with global_rng_from(ctx.generator, x.device):
            views = torch.cat([self.augment(x, ctx.generator) for _ in range(k)])
        logits = ctx.forward(views).view(k, len(x), -1)
        losses = F.cross_entropy(logits.flatten(0, 1).float(), y.repeat(k), reduction="none").view(k, len(x))
        worst = losses.argmax(0)
        return losses.max(0).values.mean(), logits[worst, torch.arange(len(x), device=x.device)]
