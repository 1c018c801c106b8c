import pytest
import torch

import uexlib as ue

FAST = dict(steps=2, train_steps=2, max_rounds=2, surrogate="cnn", surrogate_width=0.25, batch_size=16,
            progress=False)


@pytest.mark.parametrize("mode", ["samplewise", "classwise"])
def test_em_respects_the_budget_and_leaves_input_untouched(tiny_set, mode):
    before = tiny_set.images.clone()
    poison = ue.generators.create("em", eps=8 / 255, mode=mode, **FAST).generate(tiny_set)
    assert torch.equal(tiny_set.images, before)
    assert poison.delta.shape[0] == (4 if mode == "classwise" else 40)
    assert poison.delta.abs().max() <= 8 / 255 + 1e-6
    assert (poison.images.int() - tiny_set.images.int()).abs().max() <= 8
    assert (poison.images != tiny_set.images).any()
    assert torch.equal(poison.labels, tiny_set.labels)
    meta = poison.metadata
    assert meta["method"] == f"em-{mode}" and meta["norm"] == "linf" and meta["radius"] == 8 / 255
    assert meta["dataset"]["fingerprint"] == tiny_set.fingerprint() and meta["wall_s"] > 0
    assert {"git_commit", "uexlib_version", "seed", "surrogate", "params"} <= set(meta)


def test_same_seed_same_poison_on_cpu(tiny_set):
    a = ue.generators.create("em", seed=5, device="cpu", **FAST).generate(tiny_set)
    b = ue.generators.create("em", seed=5, device="cpu", **FAST).generate(tiny_set)
    c = ue.generators.create("em", seed=6, device="cpu", **FAST).generate(tiny_set)
    assert torch.equal(a.images, b.images) and torch.equal(a.delta, b.delta)
    assert not torch.equal(a.delta, c.delta)


def test_resume_from_checkpoint_gives_the_same_poison(tiny_set, tmp_path):
    settings = {**FAST, "stop_error": 0.0, "seed": 1}
    full = ue.generators.create("em", **{**settings, "max_rounds": 2}).generate(tiny_set)
    ckpt = str(tmp_path / "em.pt")
    # A run stopped after its first round, then continued with the full budget.
    ue.generators.create("em", checkpoint=ckpt, **{**settings, "max_rounds": 1}).generate(tiny_set)
    resumed = ue.generators.create("em", checkpoint=ckpt, **{**settings, "max_rounds": 2}).generate(tiny_set)
    assert resumed.metadata["rounds"] == 2
    assert torch.equal(resumed.delta, full.delta)
    with pytest.raises(ValueError, match="another EM run"):
        ue.generators.create("em", checkpoint=ckpt, **{**settings, "steps": 3}).generate(tiny_set)


@pytest.mark.parametrize("kwargs, match", [
    (dict(eps=8), r"eps must be in \(0.0, 1.0\], got 8 \(did you mean 8/255\?\)"),
    (dict(eps=0), "eps"),
    (dict(mode="pixelwise"), "mode"),
    (dict(steps=0), "steps"),
    (dict(surrogate="resnet19"), "surrogate"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ue.generators.create("em", **kwargs)


def test_unknown_generator_lists_the_available_ones():
    with pytest.raises(KeyError, match="unknown generator 'emm'; available: em"):
        ue.generators.create("emm")


def test_profile_fills_budget_but_explicit_arguments_win():
    gen = ue.generators.create("em", profile=ue.profiles.get("smoke"), steps=3)
    assert gen.params["steps"] == 3
    assert gen.params["max_rounds"] == ue.profiles.get("smoke").generator["max_rounds"]
    assert gen.params["surrogate"] == "cnn"
