"""Neural tangent generalization attack, NTGA (Yuan and Wu, ICML 2021), as the REM paper runs it
(App. A.3.2, Table 5).

The surrogate is an infinitely wide fully connected ReLU network, used through its neural tangent
kernel (NTK): a network trained by gradient flow on the mean squared error predicts, at time t,

    f_t(X*) = Theta(X*, X) Theta(X, X)^-1 (I - exp(-t Theta(X, X) / (n K))) Y         (NTK regression)

for training inputs X (n images, K classes, one-hot Y). NTGA perturbs a block of training images,
within an L-inf ball, to *maximize* the cross-entropy of these predictions on held-out clean
images: the perturbed block teaches a wide network the wrong function, and the damage transfers
to finite networks. Blocks (REM: 4,000 images) are attacked independently, 10 PGD steps of
1.1 eps / 10 (REM Table 5), no random start.

The kernel is the analytic ReLU NTK (:func:`relu_ntk`, the arc-cosine recursion of Cho and Saul
2009 with the NTK of Jacot et al. 2018), in PyTorch and differentiable in its inputs. Choices
stated here: the held-out images of the objective are a seeded clean sample of the training set
(``val_size``), poisoned themselves in blocks judged on another sample (the official code holds out
the last 10,000 training images and leaves them unpoisoned; this module poisons every image); the network has ``depth`` ReLU layers with weight and
bias variances ``w_var`` and ``b_var``. The official code uses an Erf network (5 layers) and, by an
indexing slip, repeats one FGSM step of size eps from the clean images instead of iterating PGD;
REM's Table 5 and this module iterate.
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..artifacts import Poison, check_budget
from ..attacks import project
from ..data import ImageDataset
from ..runtime import check_eps, check_float, check_int
from ..runtime import device as pick_device
from . import register


def relu_ntk(x: torch.Tensor, z: torch.Tensor, depth: int, w_var: float, b_var: float) -> torch.Tensor:
    """The NTK Theta(x, z) (len(x), len(z)) of a fully connected network with ``depth`` ReLU layers.

    Layers: Dense, then ``depth`` times (ReLU, Dense), one output; NTK parameterization with weight
    variance ``w_var`` (divided by the fan-in) and bias variance ``b_var``. Inputs are flattened.
    """
    x, z = x.flatten(1).double(), z.flatten(1).double()
    dim = x.shape[1]
    cross = w_var * (x @ z.T) / dim + b_var                    # K(x, z) after the first Dense
    own_x = w_var * (x * x).sum(1) / dim + b_var                # K(x, x)
    own_z = w_var * (z * z).sum(1) / dim + b_var
    ntk = cross
    for _ in range(depth):
        norms = torch.sqrt(own_x[:, None] * own_z[None, :])
        cos = (cross / norms).clamp(-1 + 1e-12, 1 - 1e-12)
        angle = torch.arccos(cos)
        # E[relu(u) relu(v)] and E[relu'(u) relu'(v)] for (u, v) Gaussian with covariance K.
        e_phi = norms * (torch.sin(angle) + (math.pi - angle) * cos) / (2 * math.pi)
        e_dphi = (math.pi - angle) / (2 * math.pi)
        cross = w_var * e_phi + b_var
        own_x = w_var * own_x / 2 + b_var                      # angle 0: E[relu(u)^2] = K / 2
        own_z = w_var * own_z / 2 + b_var
        ntk = cross + w_var * e_dphi * ntk
    return ntk


def ntk_predict(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, num_classes: int,
                depth: int, w_var: float, b_var: float, t: float | None, ridge: float = 1e-4) -> torch.Tensor:
    """NTK regression predictions (len(test_x), K) at time ``t`` (None: infinite), zero at t = 0."""
    targets = F.one_hot(train_y, num_classes).double()
    k_train = relu_ntk(train_x, train_x, depth, w_var, b_var)
    k_train = k_train + ridge * k_train.diagonal().mean() * torch.eye(len(k_train), dtype=k_train.dtype,
                                                                       device=k_train.device)
    k_test = relu_ntk(test_x, train_x, depth, w_var, b_var)
    values, vectors = torch.linalg.eigh(k_train)
    decay = torch.ones_like(values) if t is None else -torch.expm1(-t * values / targets.numel())
    return k_test @ (vectors @ ((decay / values)[:, None] * (vectors.T @ targets)))


@register("ntga", "neural tangent generalization attack through a ReLU NTK (Yuan & Wu 2021)")
class NeuralTangentGeneralizationAttack:
    """NTGA: each block's noise maximizes the held-out loss of NTK regression trained on the block.

    Args:
        eps: L-inf radius on the [0, 1] scale (8/255).
        steps, step_size: PGD steps (10) and step (default ``1.1 * eps / steps``, REM Table 5).
        block_size: images perturbed together (4,000, REM App. A.3.2).
        val_size: clean held-out images in the objective (10,000, the official split's size).
        t: gradient-flow time of the NTK regression (64, the official default; None: infinite).
        depth, w_var, b_var: the ReLU network's layers (5) and weight and bias variances (2.0, 0.01).
        seed: seeds the block order and the held-out sample.
    """

    def __init__(self, eps: float = 8 / 255, steps: int = 10, step_size: float | None = None,
                 block_size: int = 4000, val_size: int = 10_000, t: float | None = 64.0, depth: int = 5,
                 w_var: float = 2.0, b_var: float = 0.01, seed: int = 0, device: str = "auto",
                 progress: bool = True):
        check_eps(eps)
        check_int("steps", steps, low=1)
        step_size = 1.1 * eps / steps if step_size is None else step_size
        check_float("step_size", step_size, 0.0, eps * 1.5, low_open=True)
        check_int("block_size", block_size, low=2)
        check_int("val_size", val_size, low=1)
        if t is not None:
            check_float("t", t, 0.0, 1e12, low_open=True)
        check_int("depth", depth, low=1)
        check_float("w_var", w_var, 0.0, 100.0, low_open=True)
        check_float("b_var", b_var, 0.0, 100.0)
        check_int("seed", seed, low=0)
        self.params = {"eps": eps, "steps": steps, "step_size": step_size, "block_size": block_size,
                       "val_size": val_size, "t": t, "depth": depth, "w_var": w_var, "b_var": b_var, "seed": seed}
        self.device, self.progress = pick_device(device), progress

    def generate(self, dataset: ImageDataset) -> Poison:
        p, dev = self.params, self.device
        started = time.perf_counter()
        plan = self.blocks(dataset)
        delta = torch.zeros((len(dataset), *dataset.shape))
        for rows, held in tqdm(plan, desc="ntga blocks", disable=not self.progress, leave=False):
            x, y = (dataset.images[rows].float() / 255).to(dev), dataset.labels[rows].to(dev)
            val_x, val_y = (dataset.images[held].float() / 255).to(dev), dataset.labels[held].to(dev)
            delta[rows] = self._attack_block(x, y, val_x, val_y, dataset.num_classes).cpu()
        check_budget(delta, "linf", p["eps"])
        metadata = {"method": "ntga", "params": p, "norm": "linf", "radius": p["eps"], "seed": p["seed"],
                    "surrogate": f"infinitely wide ReLU network, depth {p['depth']} (NTK)",
                    "wall_s": time.perf_counter() - started, "device": str(dev)}
        return Poison.from_perturbation(dataset, delta, metadata, classwise=False)

    def blocks(self, dataset: ImageDataset) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(rows of a block, rows of its held-out images): a seeded sample of ``val_size`` images is
        held out for every block but its own; its images form their own blocks, held out against
        another sample, so no block is ever judged on images it contains."""
        p = self.params
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(p["seed"]))
        size = min(p["val_size"], len(dataset) // 2)
        held, rest = order[:size], order[size:]
        return ([(rows, held) for rows in rest.split(p["block_size"])]
                + [(rows, rest[:size]) for rows in held.split(p["block_size"])])

    def held_out_loss(self, x: torch.Tensor, y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
                      num_classes: int) -> torch.Tensor:
        """Cross-entropy on the held-out images of NTK regression trained on (x, y): the objective."""
        p = self.params
        logits = ntk_predict(x, y, val_x, num_classes, p["depth"], p["w_var"], p["b_var"], p["t"])
        return F.cross_entropy(logits, val_y)

    def _attack_block(self, x, y, val_x, val_y, num_classes) -> torch.Tensor:
        p = self.params
        delta = torch.zeros_like(x)
        for _ in range(p["steps"]):
            delta.requires_grad_(True)
            loss = self.held_out_loss(x + delta, y, val_x, val_y, num_classes)
            (grad,) = torch.autograd.grad(loss, delta)
            delta = project(x, delta.detach() + p["step_size"] * grad.sign(), p["eps"])
        return delta.detach()
