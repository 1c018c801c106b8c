"""REM, REM-T and SEM: budgets, determinism, resume, the perturbation switches; EM on grayscale."""
import pytest
import torch

import uexlib as ue
from uexlib.generators.rem import RobustErrorMinimizing

FAST = dict(surrogate="cnn", surrogate_width=0.25, batch_size=16, iterations=3, steps=2, eot_samples=2,
            adv_steps=2, progress=False, device="cpu")
ROBUST = ["rem", "rem-t", "sem"]


@pytest.mark.parametrize("name", ROBUST)
def test_noise_respects_the_budget_and_round_trips(tiny_set, tmp_path, name):
    before = tiny_set.images.clone()
    poison = ue.generators.create(name, eps=8 / 255, eps_adv=2 / 255, **FAST).generate(tiny_set)
    assert torch.equal(tiny_set.images, before)
    assert poison.delta.shape == (40, 3, 16, 16) and not poison.classwise
    assert poison.delta.abs().max() <= 8 / 255 + 1e-6
    assert (poison.images.int() - tiny_set.images.int()).abs().max() <= 8
    assert (poison.images != tiny_set.images).float().mean() > 0.5
    meta = poison.metadata
    assert meta["method"] == name and meta["radius"] == 8 / 255 and meta["params"]["eps_adv"] == 2 / 255
    assert [row["iteration"] for row in meta["history"]] == [3]
    loaded = ue.Poison.load(poison.save(tmp_path / f"{name}.uex"), dataset=tiny_set)
    assert loaded.content_hash() == poison.content_hash() and torch.equal(loaded.images, poison.images)


@pytest.mark.parametrize("name", ROBUST)
def test_same_seed_same_poison_on_cpu(tiny_set, name):
    a, b, c = (ue.generators.create(name, seed=s, **FAST).generate(tiny_set) for s in (3, 3, 4))
    assert a.content_hash() == b.content_hash() and torch.equal(a.delta, b.delta)
    assert not torch.equal(a.delta, c.delta)


def test_variants_differ_only_in_their_documented_defaults():
    rem, sem, rem_t = (ue.generators.GENERATORS.defaults(n) for n in ("rem", "sem", "rem-t"))
    assert {k for k in rem if rem[k] != sem[k]} == {"noise_perturbation"} and sem["noise_perturbation"] == "random"
    assert {k for k in rem if rem[k] != rem_t[k]} == {"transform"} and rem_t["transform"] == "crop_flip_color_gray"
    # The paper's PGD settings (REM Table 5, SEM Table 9): alpha = rho / 5 at 10 steps.
    params = ue.generators.create("rem", eps=8 / 255, eps_adv=4 / 255).params
    assert params["step_size"] == pytest.approx(8 / 255 / 5) and params["adv_step_size"] == pytest.approx(4 / 255 / 5)
    assert (params["steps"], params["adv_steps"], params["eot_samples"], params["iterations"]) == (10, 10, 5, 5000)
    assert ue.generators.create("sem", transform="none").params["noise_perturbation"] == "random"


@pytest.mark.parametrize("kwargs, match", [
    (dict(eps=8), r"eps must be .*did you mean 8/255"),
    (dict(eps_adv=-0.1), "eps_adv"),
    (dict(transform="jpeg"), "transform must be one of none, crop_flip"),
    (dict(noise_perturbation="gaussian"), "noise_perturbation must be one of adversarial, random, none"),
    (dict(surrogate_perturbation="pgd"), "surrogate_perturbation"),
    (dict(eot_samples=0), "eot_samples"),
    (dict(rho_u=8 / 255), "takes no parameter 'rho_u'"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ue.generators.create("rem", **kwargs)


@pytest.mark.parametrize("kind", ["adversarial", "random", "none"])
def test_perturbation_after_the_transformation(tiny_set, kind):
    gen = ue.generators.create("rem", eps_adv=4 / 255, **FAST)
    torch.manual_seed(0)
    model = ue.models.create("cnn", 4, 3, 0.25).eval()
    x, y = tiny_set.images.float() / 255, tiny_set.labels
    delta = gen.perturbation(model, x, y, kind, torch.Generator().manual_seed(0))
    assert delta.abs().max() <= 4 / 255 + 1e-6 and ((x + delta) >= 0).all() and ((x + delta) <= 1).all()
    assert not delta.requires_grad
    if kind == "none":
        assert not delta.any()
    else:
        assert delta.abs().max() > 2 / 255
    if kind == "adversarial":  # PGD's maximizer raises the loss above a random point's
        loss = torch.nn.functional.cross_entropy
        random = gen.perturbation(model, x, y, "random", torch.Generator().manual_seed(0))
        with torch.no_grad():
            assert loss(model(x + delta), y) > loss(model(x + random), y)


def test_zero_adversarial_radius_is_error_minimizing_with_eot(tiny_set):
    a = ue.generators.create("rem", eps_adv=0.0, seed=1, **FAST).generate(tiny_set)
    b = ue.generators.create("rem", eps_adv=0.0, seed=1, noise_perturbation="none",
                             surrogate_perturbation="none", **FAST).generate(tiny_set)
    assert torch.equal(a.delta, b.delta)


def test_resume_from_checkpoint_gives_the_same_poison(tiny_set, tmp_path, monkeypatch):
    settings = {**FAST, "iterations": 5, "seed": 2, "pgd_batch_size": 8, "checkpoint_every": 2}
    full = ue.generators.create("sem", **settings).generate(tiny_set)
    ckpt = str(tmp_path / "sem.pt")
    calls = {"n": 0}
    original = RobustErrorMinimizing.noise

    def interrupt(self, *args, **kwargs):  # 5 training batches, then stop inside the regeneration
        calls["n"] += 1
        if calls["n"] == 5 + 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(RobustErrorMinimizing, "noise", interrupt)
        with pytest.raises(KeyboardInterrupt):
            ue.generators.create("sem", checkpoint=ckpt, **settings).generate(tiny_set)
    state = torch.load(ckpt, weights_only=False)["state"]
    assert state["done"] == 5 and state["regenerated"] == 2
    resumed = ue.generators.create("sem", checkpoint=ckpt, **settings).generate(tiny_set)
    assert torch.equal(resumed.delta, full.delta)
    with pytest.raises(ValueError, match="another sem run"):
        ue.generators.create("sem", checkpoint=ckpt, **{**settings, "eps_adv": 1 / 255}).generate(tiny_set)


def test_em_on_grayscale_adds_gray_optimized_noise_to_color_images(tiny_set):
    fast = dict(steps=2, train_steps=2, max_rounds=1, surrogate="cnn", surrogate_width=0.25, batch_size=16,
                progress=False, device="cpu", seed=0)
    gray = ue.generators.create("em", grayscale=True, **fast).generate(tiny_set)
    color = ue.generators.create("em", **fast).generate(tiny_set)
    assert gray.metadata["method"] == "em-samplewise-grayscale"
    assert gray.metadata["dataset"]["fingerprint"] == tiny_set.fingerprint()
    assert gray.delta.abs().max() <= 8 / 255 + 1e-6
    # The poisoned images keep their colors: clean color plus noise, not a gray image.
    assert (gray.images[:, 0] != gray.images[:, 1]).float().mean() > 0.5
    assert (gray.images.int() - tiny_set.images.int()).abs().max() <= 8
    assert not torch.equal(gray.delta, color.delta)
    with pytest.raises(ValueError, match="grayscale must be one of"):
        ue.generators.create("em", grayscale="yes")
