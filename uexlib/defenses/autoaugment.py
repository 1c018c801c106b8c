"""AutoAugment (Cubuk et al., CVPR 2019) with its CIFAR-10 policy, the ST paper's baseline (Table 5).

A policy is a list of sub-policies of two operations each (with probabilities and magnitudes);
every image gets one sub-policy drawn uniformly. The operations are kornia's; kornia applies one
drawn sub-policy to a whole batch, so here each sub-policy is applied to the images that drew it.
"""
from __future__ import annotations

import torch
from kornia.augmentation.auto import AutoAugment as KorniaAutoAugment
from kornia.augmentation.auto.autoaugment.autoaugment import cifar10_policy, imagenet_policy, svhn_policy

from ..runtime import check_choice
from . import DEFENSES
from .base import Defense, StepContext, global_rng_from

POLICIES = {"cifar10": cifar10_policy, "svhn": svhn_policy, "imagenet": imagenet_policy}


def per_image(x: torch.Tensor, choices: list, gen: torch.Generator | None) -> torch.Tensor:
    """Each image of ``x`` through one of the kornia modules ``choices``, drawn uniformly per image.

    kornia draws one sub-policy per call for the whole batch; calling each drawn module on the
    images that drew it gives every image its own. Call under :func:`global_rng_from`.
    """
    choice = torch.randint(0, len(choices), (len(x),), device=x.device, generator=gen)
    out = x.contiguous().clone()
    for k in choice.unique().tolist():
        rows = choice == k
        out[rows] = choices[k](x[rows].contiguous()).to(x.dtype)
    return out


@DEFENSES.register("autoaugment", "AutoAugment, one learned sub-policy per image (Cubuk et al. 2019; ST Table 5)")
class AutoAugment(Defense):
    """Every training image gets one sub-policy of the AutoAugment ``policy``, drawn uniformly.

    Args:
        policy: ``"cifar10"`` (the ST paper's setting), ``"svhn"`` or ``"imagenet"``.
    """

    def __init__(self, policy: str = "cifar10"):
        check_choice("policy", policy, tuple(POLICIES))
        self.params = {"policy": policy}
        self._subpolicies = [KorniaAutoAugment(policy=[sub]) for sub in POLICIES[policy]]

    def transform(self, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        with global_rng_from(ctx.generator, x.device):
            return per_image(x, self._subpolicies, ctx.generator), y
