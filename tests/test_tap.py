"""TAP: budget, determinism, resume, and the targeted move it makes on the crafting model."""
import pytest
import torch

import uexlib as ue
from uexlib.generators import tap

FAST = dict(surrogate="cnn", surrogate_width=0.25, batch_size=16, train_iterations=6, steps=3,
            progress=False, device="cpu")


def test_budget_round_trip_and_same_seed(tiny_set, tmp_path):
    poison = ue.generators.create("tap", seed=1, **FAST).generate(tiny_set)
    assert poison.delta.abs().max() <= 8 / 255 + 1e-6 and poison.metadata["norm"] == "linf"
    loaded = ue.Poison.load(poison.save(tmp_path / "tap.npz"), dataset=tiny_set)
    assert loaded.content_hash() == poison.content_hash()
    assert ue.generators.create("tap", seed=1, **FAST).generate(tiny_set).content_hash() == poison.content_hash()
    assert ue.generators.create("tap", seed=2, **FAST).generate(tiny_set).content_hash() != poison.content_hash()


def test_the_noise_moves_the_crafting_model_towards_the_next_class(data_root):
    """On real images the perturbed set is classified as (y + 1) mod 10 far more often than the clean one.

    Without augmentation in the attack (``transform="none"``), so that the check on unaugmented
    images sees the whole move (measured: 3 % of clean images hit the target, 45 % of perturbed ones).
    """
    cifar = ue.load_dataset("cifar10", "train", data_root, per_class=30)
    gen = ue.generators.create("tap", **{**FAST, "batch_size": 50, "train_iterations": 200, "steps": 10,
                                         "transform": "none"})
    captured = {}
    original = gen._attack

    def keep_model(trainer, *args):
        captured["model"] = trainer.model
        return original(trainer, *args)

    gen._attack = keep_model
    poison = gen.generate(cifar)
    model = captured["model"].eval()
    target = (cifar.labels + 1) % 10
    with torch.no_grad():
        clean_hits = (model(cifar.images.float() / 255).argmax(1) == target).float().mean()
        poisoned_hits = (model(poison.images.float() / 255).argmax(1) == target).float().mean()
    assert poisoned_hits > clean_hits + 0.25


def test_resume_from_checkpoint_gives_the_same_poison(tiny_set, tmp_path, monkeypatch):
    settings = {**FAST, "seed": 3, "pgd_batch_size": 8, "checkpoint_every": 2}
    full = ue.generators.create("tap", **settings).generate(tiny_set)
    ckpt = str(tmp_path / "tap.pt")
    calls = {"n": 0}
    original = tap.pgd

    def interrupt(*args, **kwargs):      # stop inside the attack, after 3 of its 5 batches
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(tap, "pgd", interrupt)
        with pytest.raises(KeyboardInterrupt):
            ue.generators.create("tap", checkpoint=ckpt, **settings).generate(tiny_set)
    state = torch.load(ckpt, weights_only=False)["state"]
    assert state["done"] == 6 and state["attacked"] == 2
    resumed = ue.generators.create("tap", checkpoint=ckpt, **settings).generate(tiny_set)
    assert torch.equal(resumed.delta, full.delta)
    with pytest.raises(ValueError, match="another tap run"):
        ue.generators.create("tap", checkpoint=ckpt, **{**settings, "shift": 2}).generate(tiny_set)


@pytest.mark.parametrize("params, match", [({"eps": 8}, "did you mean 8/255"), ({"shift": 0}, "shift"),
                                           ({"transform": "rotate"}, "transform"), ({"steps": 0}, "steps")])
def test_bad_arguments_are_named(params, match):
    with pytest.raises(ValueError, match=match):
        ue.generators.create("tap", **params)


def test_a_shift_of_whole_turns_is_refused(tiny_set):
    with pytest.raises(ValueError, match="maps every class"):
        ue.generators.create("tap", shift=4, **FAST).generate(tiny_set)
