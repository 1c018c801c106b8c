import pytest
import torch
import torch.nn.functional as F

import uexlib as ue
from uexlib.attacks import NORMS, Evasion, frozen, pgd, project, random_init

RADII = {"linf": 8 / 255, "l2": 0.5, "l1": 4.0}


@pytest.fixture(scope="module")
def model():
    """A random linear classifier: input-sensitive enough that each budget moves the loss clearly."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10)).eval()


@pytest.fixture(scope="module")
def batch():
    gen = torch.Generator().manual_seed(0)
    return torch.rand(16, 3, 32, 32, generator=gen), torch.randint(0, 10, (16,), generator=gen)


def _loss(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model(x), y).item()


def _norms(delta, norm):
    flat = delta.flatten(1)
    return {"linf": flat.abs().amax(1), "l2": flat.norm(dim=1), "l1": flat.abs().sum(1)}[norm]


@pytest.mark.parametrize("norm", NORMS)
def test_maximizing_raises_and_minimizing_lowers_the_loss_within_the_budget(model, batch, norm):
    x, y = batch
    eps = RADII[norm]
    before = _loss(model, x, y)
    up = pgd(model, x, y, eps=eps, norm=norm, steps=10)
    down = pgd(model, x, y, eps=eps, norm=norm, steps=10, minimize=True)
    assert _loss(model, x + up, y) > before + 0.05
    assert _loss(model, x + down, y) < before - 0.05
    for delta in (up, down):
        assert (_norms(delta, norm) <= eps * (1 + 1e-5)).all()
        assert (x + delta).min() >= 0 and (x + delta).max() <= 1


def test_targeted_attack_moves_predictions_to_the_target(model, batch):
    x, y = batch
    target = (y + 1) % 10
    delta = pgd(model, x, y, eps=16 / 255, steps=20, target=target)
    with torch.no_grad():
        hit_after = (model(x + delta).argmax(1) == target).float().mean()
        hit_before = (model(x).argmax(1) == target).float().mean()
    assert hit_after > hit_before + 0.3


def test_l1_steps_are_sparse(model, batch):
    x, y = batch
    delta = pgd(model, x, y, eps=RADII["l1"], norm="l1", steps=1, step_size=1.0, l1_sparsity=0.01)
    moved = (delta != 0).flatten(1).sum(1)
    assert (moved <= 0.01 * 3 * 32 * 32 + 1).all() and (moved > 0).all()


@pytest.mark.parametrize("norm", NORMS)
def test_projection_and_random_start_respect_the_ball(norm):
    x = torch.rand(8, 3, 8, 8)
    eps = {"linf": 0.1, "l2": 0.5, "l1": 2.0}[norm]
    far = torch.randn(8, 3, 8, 8) * 3
    projected = project(x, far, eps, norm)
    assert (_norms(projected, norm) <= eps * (1 + 1e-5)).all()
    assert (x + projected).min() >= 0 and (x + projected).max() <= 1
    start = random_init(x, eps, norm, torch.Generator().manual_seed(0))
    assert (_norms(start, norm) <= eps * (1 + 1e-5)).all() and start.abs().sum() > 0


def test_l1_projection_is_the_euclidean_projection():
    v = torch.tensor([[3.0, -1.0, 0.5, 0.0]])
    # Soft-thresholding at theta = 1.5 gives (1.5, 0, 0, 0): L1 norm 1.5, the radius.
    out = project(torch.full((1, 4), 0.5), v.view(1, 1, 1, 4) * 0.1, 0.15, "l1").flatten()
    assert torch.allclose(out, torch.tensor([0.15, 0.0, 0.0, 0.0]), atol=1e-6)


def test_inputs_are_not_mutated_and_chunking_gives_the_same_result(model, batch):
    x, y = batch
    x0, y0 = x.clone(), y.clone()
    whole = pgd(model, x, y, eps=8 / 255, steps=3)
    chunked = pgd(model, x, y, eps=8 / 255, steps=3, batch_size=5)
    assert torch.equal(x, x0) and torch.equal(y, y0)
    assert torch.allclose(whole, chunked, atol=1e-6)


def test_eot_runs_all_samples_in_one_forward_pass(model, batch):
    x, y = batch
    calls = []

    def flip_some(inputs, gen):
        calls.append(len(inputs))
        return ue.augment(inputs, "crop_flip", gen)

    delta = pgd(model, x, y, eps=8 / 255, steps=2, eot=flip_some, eot_samples=5,
                generator=torch.Generator().manual_seed(0))
    assert calls == [5 * len(x)] * 2 and delta.abs().max() <= 8 / 255 + 1e-7


def test_requires_grad_is_restored_even_after_an_exception(batch):
    x, y = batch
    model = ue.models.create("cnn", 10, 3, width=0.25)
    next(model.parameters()).requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]

    def broken(logits, labels):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        pgd(model.eval(), x, y, eps=8 / 255, steps=1, loss_fn=broken)
    assert [p.requires_grad for p in model.parameters()] == flags
    with frozen(model):
        assert not any(p.requires_grad for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == flags


def test_parameters_receive_no_gradient(model, batch):
    x, y = batch
    pgd(model, x, y, eps=8 / 255, steps=2)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("kwargs, match", [
    (dict(norm="l3"), "norm"),
    (dict(eps=0), "eps"),
    (dict(steps=-1), "steps"),
    (dict(minimize=True, target=torch.zeros(16, dtype=torch.long)), "not both"),
    (dict(eot_samples=0), "eot_samples"),
])
def test_bad_arguments_are_named(model, batch, kwargs, match):
    x, y = batch
    with pytest.raises(ValueError, match=match):
        pgd(model, x, y, **{"eps": 8 / 255, **kwargs})


@pytest.mark.gpu
def test_pgd_on_cuda_under_bf16_matches_the_budget():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    torch.manual_seed(0)
    model = ue.models.create("resnet18", 10, 3).cuda().to(memory_format=torch.channels_last).eval()
    x, y = torch.rand(64, 3, 32, 32, device="cuda"), torch.randint(0, 10, (64,), device="cuda")
    delta = pgd(model, x, y, eps=8 / 255, steps=5, minimize=True)
    assert delta.abs().max() <= 8 / 255 + 1e-6 and delta.is_cuda


def test_fgsm_evasion_is_one_full_step_from_the_clean_image(model, batch):
    x, y = batch
    delta = Evasion("fgsm", eps=4 / 255)(model, x, y)
    inside = ((x + delta) > 0) & ((x + delta) < 1)       # away from the clip at the pixel range
    assert torch.allclose(delta[inside].abs(), torch.full_like(delta[inside], 4 / 255))
    assert _loss(model, x + delta, y) > _loss(model, x, y)


def test_pgd_evasion_defaults_cross_the_ball_and_follow_the_seed(model, batch):
    x, y = batch
    attack = Evasion("pgd", eps=8 / 255, steps=4)
    assert attack.settings()["step_size"] == pytest.approx(4 / 255)
    first = attack(model, x, y, torch.Generator().manual_seed(1))
    assert torch.equal(first, attack(model, x, y, torch.Generator().manual_seed(1)))
    assert not torch.equal(first, attack(model, x, y, torch.Generator().manual_seed(2)))
    assert _norms(first, "linf").max() <= 8 / 255 + 1e-6


@pytest.mark.parametrize("kwargs, match", [(dict(kind="cw", eps=0.1), "kind.*fgsm, pgd"),
                                           (dict(kind="pgd", eps=0.0), "eps"),
                                           (dict(kind="pgd", eps=0.1, steps=0), "steps")])
def test_bad_evasions_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Evasion(**kwargs)


def test_evaluate_under_attack_is_lower_and_leaves_the_clean_figure_alone(model, batch):
    x, y = batch
    data = ue.ImageDataset(images=(x * 255).round().to(torch.uint8), labels=y, classes=tuple("abcdefghij"),
                           name="random", split="test", source="synthetic")
    clean = ue.evaluate(model, data, device="cpu")
    attacked = ue.evaluate(model, data, device="cpu", attack=Evasion("pgd", eps=8 / 255, steps=5))
    assert attacked["loss"] > clean["loss"]
    assert attacked["acc"] <= clean["acc"]
    assert ue.evaluate(model, data, device="cpu") == clean
    assert model.training is False
