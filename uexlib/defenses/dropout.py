"""Dropout before the classifier (Srivastava et al., JMLR 2014), the ST paper's baseline (Table 5, App. C.5).

The ST paper trains with "drop-out (0.5 probability)" without saying where; here it is applied to
the input of the model's last linear layer (the pooled features), the usual place in a ResNet.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..runtime import check_float
from . import DEFENSES
from .base import Defense


@DEFENSES.register("dropout", "dropout on the features entering the last linear layer (ST App. C.5: p 0.5)")
class Dropout(Defense):
    """Zero each feature entering the model's last ``nn.Linear`` with probability ``p`` while training.

    The hook stays on the model: it acts only in train mode, so evaluation is unchanged. Its
    random draws come from torch's global generator (seeded with the model), not the step's.
    """

    def __init__(self, p: float = 0.5):
        check_float("p", p, 0.0, 1.0, low_open=True)
        self.params = {"p": p}

    def attach(self, model: torch.nn.Module) -> None:
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        if not linears:
            raise ValueError(f"dropout needs a model with an nn.Linear classifier; {type(model).__name__} has none")
        p = self.params["p"]
        linears[-1].register_forward_pre_hook(lambda module, inputs: (F.dropout(inputs[0], p, module.training),))
