"""NTGA: the analytic ReLU NTK against empirical NTKs of wide networks, and the attack's objective."""
import math

import pytest
import torch

import uexlib as ue
from uexlib.generators.ntga import relu_ntk

DEPTH, W_VAR, B_VAR = 2, 2.0, 0.01


def _empirical_ntk(x, width, seeds=4):
    """Average over initializations of J J^T for a finite network of the same architecture."""
    total = 0
    dims = [x[0].numel()] + [width] * DEPTH + [1]
    for seed in range(seeds):
        gen = torch.Generator().manual_seed(seed)
        weights = [torch.randn(dims[i + 1], dims[i], generator=gen, dtype=torch.float64, requires_grad=True)
                   for i in range(len(dims) - 1)]
        biases = [torch.randn(dims[i + 1], generator=gen, dtype=torch.float64, requires_grad=True)
                  for i in range(len(dims) - 1)]

        def f(inputs):
            h = inputs.flatten(1).double()
            for i, (w, b) in enumerate(zip(weights, biases)):
                h = math.sqrt(W_VAR / w.shape[1]) * (torch.relu(h) if i else h) @ w.T + math.sqrt(B_VAR) * b
            return h[:, 0].sum()

        rows = [torch.cat([g.flatten() for g in torch.autograd.grad(f(x[i:i + 1]), weights + biases)])
                for i in range(len(x))]
        jacobian = torch.stack(rows)
        total = total + jacobian @ jacobian.T
    return total / seeds


def test_relu_ntk_matches_wide_networks_ever_closer():
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    analytic = relu_ntk(x, x, DEPTH, W_VAR, B_VAR)
    assert torch.allclose(analytic, analytic.T) and (torch.linalg.eigvalsh(analytic) > 0).all()
    errors = {w: ((_empirical_ntk(x, w) - analytic).abs().max() / analytic.abs().max()).item() for w in (64, 2048)}
    assert errors[2048] < 0.05 and errors[2048] < errors[64]


def test_the_noise_ruins_ntk_regression_on_held_out_images(data_root):
    """Trained to convergence (t=None) on a perturbed block, NTK regression misclassifies its held-out
    images far more (measured: 32 % -> 3 % accuracy; 22 % -> 12 % at t = 64)."""
    from uexlib.generators.ntga import ntk_predict
    cifar = ue.load_dataset("cifar10", "train", data_root, per_class=30)
    gen = ue.generators.create("ntga", block_size=200, val_size=100, steps=5, t=None, progress=False, device="cpu")
    plan = gen.blocks(cifar)
    assert sorted(torch.cat([rows for rows, _ in plan]).tolist()) == list(range(len(cifar)))
    assert all(not set(rows.tolist()) & set(held.tolist()) for rows, held in plan)
    poison = gen.generate(cifar)
    assert poison.delta.abs().max() <= 8 / 255 + 1e-6
    rows, held = plan[0]
    val_x, val_y = cifar.images[held].float() / 255, cifar.labels[held]

    def held_out_acc(images):
        predictions = ntk_predict(images[rows].float() / 255, cifar.labels[rows], val_x, 10, 5, 2.0, 0.01, None)
        return predictions.argmax(1).eq(val_y).float().mean().item()

    assert held_out_acc(poison.images) < held_out_acc(cifar.images) - 0.15


@pytest.mark.parametrize("params, match", [({"block_size": 1}, "block_size"), ({"t": 0}, "t"),
                                           ({"depth": 0}, "depth"), ({"eps": 8}, "did you mean 8/255")])
def test_bad_arguments_are_named(params, match):
    with pytest.raises(ValueError, match=match):
        ue.generators.create("ntga", **params)
