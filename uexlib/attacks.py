"""The one PGD of the library, used by every generator and by adversarial training.

Projected gradient descent/ascent on the loss of ``model(x + delta)`` (Madry et al., ICLR 2018,
eq. 2) under an L-inf, L2 or L1 budget. Inputs follow one contract: NCHW float in [0, 1];
models normalize inside. Inputs are never mutated; :func:`pgd` returns a new perturbation.

* ``minimize=True`` descends the loss (error-minimizing noise, Huang et al., ICLR 2021, eq. 2);
  ``target=`` descends the loss towards other labels (targeted attacks, TAP);
  the default ascends it (adversarial examples).
* ``eot=`` averages the gradient over ``eot_samples`` random transformations of every image
  (expectation over transformation, Athalye et al., ICML 2018; REM eq. 5), all samples in one
  forward pass.
* On CUDA the forward runs under bf16 autocast in channels_last; nothing inside the loop waits
  for the host (no ``.item()``), and ``batch_size`` chunks the data independently of any SGD
  batch.

The model's mode (train or eval, i.e. which batch-norm statistics are used) is the caller's
choice; parameters get no gradient while the attack runs and their ``requires_grad`` flags are
restored afterwards, even after an exception.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .runtime import check_choice, check_float, check_int

NORMS = ("linf", "l2", "l1")

Transform = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@contextlib.contextmanager
def frozen(model: torch.nn.Module):
    """Parameters of ``model`` stop requiring gradients inside the block; the previous flags come back."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def autocast(dev: torch.device):
    """bf16 autocast on CUDA; a no-op elsewhere (CPU bf16 is slower than fp32 for these nets)."""
    if dev.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _flat_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    if norm == "linf":
        return flat.abs().amax(1)
    return flat.norm(p=2 if norm == "l2" else 1, dim=1)


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.view(-1, *([1] * (like.ndim - 1)))


def _project_l1_ball(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Euclidean projection of each sample onto the L1 ball (Duchi et al., ICML 2008, Fig. 1), batched."""
    flat = delta.flatten(1)
    magnitude = flat.abs()
    outside = magnitude.sum(1) > eps
    sorted_mag, _ = magnitude.sort(dim=1, descending=True)
    cumulative = sorted_mag.cumsum(1) - eps
    ranks = torch.arange(1, flat.shape[1] + 1, device=delta.device, dtype=delta.dtype)
    # rho: the last index where the sorted magnitude still exceeds the running threshold.
    rho = (sorted_mag * ranks > cumulative).to(delta.dtype).mul(ranks).argmax(1, keepdim=True)
    theta = (cumulative.gather(1, rho) / (rho + 1).to(delta.dtype)).clamp_min(0)
    shrunk = flat.sign() * (magnitude - theta).clamp_min(0)
    return torch.where(outside[:, None], shrunk, flat).view_as(delta)


def project(x: torch.Tensor, delta: torch.Tensor, eps: float, norm: str = "linf") -> torch.Tensor:
    """``delta`` projected into the ``norm`` ball of radius ``eps``, with ``x + delta`` kept in [0, 1].

    L-inf and L2 are exact projections onto the ball; the [0, 1] box is then enforced by
    clipping (exact for L-inf, the usual approximation for L2 and L1).
    """
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    elif norm == "l2":
        scale = (eps / _flat_norm(delta, "l2").clamp_min(1e-12)).clamp(max=1.0)
        delta = delta * _per_sample(scale, delta)
    else:
        delta = _project_l1_ball(delta, eps)
    return (x + delta).clamp(0, 1) - x


def _step(grad: torch.Tensor, x_adv: torch.Tensor, norm: str, l1_sparsity: float) -> torch.Tensor:
    """The steepest-ascent direction of unit size in ``norm`` for gradient ``grad``."""
    if norm == "linf":
        return grad.sign()
    if norm == "l2":
        return grad / _per_sample(_flat_norm(grad, "l2").clamp_min(1e-12), grad)
    # Sparse L1 descent (Tramer & Boneh, NeurIPS 2019, Alg. 1): move only the coordinates whose
    # gradient is in the top ``l1_sparsity`` fraction, skipping pixels already at the box edge
    # in the gradient's direction, with unit L1 length.
    blocked = ((x_adv <= 0) & (grad < 0)) | ((x_adv >= 1) & (grad > 0))
    magnitude = grad.abs().masked_fill(blocked, 0).flatten(1)
    k = max(1, int(round(l1_sparsity * magnitude.shape[1])))
    threshold = magnitude.topk(k, dim=1).values[:, -1:]
    chosen = (magnitude >= threshold) & (magnitude > 0)
    direction = grad.sign().flatten(1) * chosen
    return (direction / direction.abs().sum(1, keepdim=True).clamp_min(1)).view_as(grad)


def random_init(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random point of the ``norm`` ball of radius ``eps`` around ``x`` (uniform for L-inf)."""
    if norm == "linf":
        delta = (torch.rand(x.shape, device=x.device, generator=generator) * 2 - 1) * eps
    else:
        direction = torch.randn(x.shape, device=x.device, generator=generator)
        if norm == "l1":
            direction = direction.sign() * torch.empty_like(x).exponential_(generator=generator)
        radius = torch.rand(len(x), device=x.device, generator=generator) * eps
        delta = direction * _per_sample(radius / _flat_norm(direction, norm).clamp_min(1e-12), x)
    return project(x, delta.to(x.dtype), eps, norm)


def pgd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str = "linf",
        steps: int = 10, step_size: float | None = None, minimize: bool = False,
        target: torch.Tensor | None = None, delta: torch.Tensor | None = None, random_start: bool = False,
        eot: Transform | None = None, eot_samples: int = 1, batch_size: int | None = None,
        generator: torch.Generator | None = None, loss_fn: LossFn | None = None,
        l1_sparsity: float = 0.05) -> torch.Tensor:
    """``steps`` projected gradient steps on ``loss_fn(model(x + delta), labels)``; returns ``delta``.

    Args:
        model: the classifier; its mode (train/eval) is left as the caller set it.
        x: clean images (N, C, H, W) in [0, 1]; y: labels (N,).
        eps: radius of the ``norm`` ball on the [0, 1] pixel scale (8/255 for L-inf).
        norm: ``"linf"``, ``"l2"`` or ``"l1"`` (sparse L1 steps).
        steps, step_size: number and size of the steps (default ``2.5 * eps / steps``).
        minimize: descend the loss on ``y`` (error-minimizing) instead of ascending it.
        target: labels to descend towards (a targeted attack); excludes ``minimize``.
        delta: starting perturbation (default zero, or random with ``random_start``).
        eot: ``transform(batch, generator)`` applied to ``x + delta`` before the forward pass; the
            gradient is averaged over ``eot_samples`` draws, computed as one batch.
        batch_size: images attacked at once (default all of ``x``).
        generator: random source for the start and for ``eot``.
        loss_fn: per-batch scalar loss of (logits, labels); default summed cross-entropy.
        l1_sparsity: fraction of coordinates an L1 step moves.

    Returns:
        The perturbation (N, C, H, W), detached, inside the ball and with ``x + delta`` in [0, 1].
    """
    check_choice("norm", norm, NORMS)
    check_float("eps", eps, 0.0, float("inf"), low_open=True)
    check_int("steps", steps, low=0)
    check_int("eot_samples", eot_samples, low=1)
    check_float("l1_sparsity", l1_sparsity, 0.0, 1.0, low_open=True)
    if target is not None and minimize:
        raise ValueError("give either minimize=True or target=, not both (a target is always descended towards)")
    step_size = 2.5 * eps / max(steps, 1) if step_size is None else step_size
    check_float("step_size", step_size, 0.0, float("inf"), low_open=True)
    labels = y if target is None else target
    descend = minimize or target is not None
    chunk = len(x) if batch_size is None else batch_size
    check_int("batch_size", chunk, low=1)
    loss_fn = loss_fn or (lambda logits, lab: F.cross_entropy(logits, lab, reduction="sum"))

    channels_last = x.device.type == "cuda"
    out = []
    with frozen(model):
        for start in range(0, len(x), chunk):
            xb, lb = x[start:start + chunk], labels[start:start + chunk]
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            if delta is not None:
                db = project(xb, delta[start:start + chunk].to(xb.dtype), eps, norm)
            elif random_start:
                db = random_init(xb, eps, norm, generator)
            else:
                db = torch.zeros_like(xb)
            repeated = lb.repeat(eot_samples) if eot is not None else lb
            for _ in range(steps):
                db = db.detach().requires_grad_(True)
                inputs = xb + db
                if eot is not None:
                    inputs = eot(inputs.repeat(eot_samples, 1, 1, 1), generator)
                with autocast(xb.device):
                    logits = model(inputs)
                loss = loss_fn(logits.float(), repeated)
                (grad,) = torch.autograd.grad(loss, db)
                move = _step(grad, xb + db.detach(), norm, l1_sparsity)
                db = project(xb, db.detach() + (-step_size if descend else step_size) * move, eps, norm)
            out.append(db.detach())
    return torch.cat(out) if out else torch.zeros_like(x)


EVASIONS = ("fgsm", "pgd")


@dataclass(frozen=True)
class Evasion:
    """A test-time attack on a trained model, for :func:`uexlib.evaluate` (``attack=``).

    ``kind="fgsm"``: one signed-gradient step of size ``eps`` from the clean image (Goodfellow
    et al., ICLR 2015; thesis eq. 2.9). ``kind="pgd"``: ``steps`` steps of ``step_size`` (default
    ``2 * eps / steps``), from a random point of the ball when ``random_start`` (Madry et al.,
    ICLR 2018; thesis eq. 2.10: MNIST 10 steps of 0.01, CIFAR-10 20 steps of eps/10).

    Example:
        >>> ue.evaluate(model, test_set, attack=Evasion("pgd", eps=8/255, steps=20, step_size=0.8/255))
    """

    kind: str
    eps: float
    steps: int = 10
    step_size: float | None = None
    random_start: bool = True
    norm: str = "linf"

    def __post_init__(self):
        check_choice("kind", self.kind, EVASIONS)
        check_choice("norm", self.norm, NORMS)
        check_float("eps", self.eps, 0.0, float("inf"), low_open=True)
        check_int("steps", self.steps, low=1)
        if self.step_size is not None:
            check_float("step_size", self.step_size, 0.0, float("inf"), low_open=True)

    def describe(self) -> str:
        if self.kind == "fgsm":
            return f"FGSM eps {self.eps:.4g}"
        start = "random start, " if self.random_start else ""
        return f"PGD eps {self.eps:.4g} ({self.norm}), {start}{self.steps} steps of {self.settings()['step_size']:.4g}"

    def settings(self) -> dict:
        """Keyword arguments of :func:`pgd` that make this attack."""
        if self.kind == "fgsm":
            return {"eps": self.eps, "norm": self.norm, "steps": 1, "step_size": self.eps, "random_start": False}
        step_size = 2 * self.eps / self.steps if self.step_size is None else self.step_size
        return {"eps": self.eps, "norm": self.norm, "steps": self.steps, "step_size": step_size,
                "random_start": self.random_start}

    def __call__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """The perturbation of ``x`` (labels ``y``); the model's mode is the caller's."""
        with torch.enable_grad():
            return pgd(model, x, y, generator=generator, **self.settings())
