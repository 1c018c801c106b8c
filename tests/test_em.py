import pytest
import torch

import uexlib as ue

FAST = dict(steps=2, train_steps=2, max_rounds=2, surrogate="cnn", surrogate_width=0.25, batch_size=16,
            progress=False, device="cpu")


@pytest.mark.parametrize("loop", ["alternate", "batchwise"])
@pytest.mark.parametrize("mode", ["samplewise", "classwise"])
def test_em_respects_the_budget_and_leaves_input_untouched(tiny_set, mode, loop):
    before = tiny_set.images.clone()
    poison = ue.generators.create("em", eps=8 / 255, mode=mode, loop=loop, iterations=4, **FAST).generate(tiny_set)
    assert torch.equal(tiny_set.images, before)
    assert poison.delta.shape[0] == (4 if mode == "classwise" else 40)
    assert poison.delta.abs().max() <= 8 / 255 + 1e-6
    assert (poison.images.int() - tiny_set.images.int()).abs().max() <= 8
    assert (poison.images != tiny_set.images).any()
    assert torch.equal(poison.labels, tiny_set.labels)
    meta = poison.metadata
    assert meta["method"] == f"em-{mode}" and meta["norm"] == "linf" and meta["radius"] == 8 / 255
    assert meta["params"]["loop"] == loop and meta["bn_mode_during_pgd"] == "train"
    assert meta["dataset"]["fingerprint"] == tiny_set.fingerprint() and meta["wall_s"] > 0
    assert {"git_commit", "uexlib_version", "seed", "surrogate", "params", "final_train_error"} <= set(meta)


def test_same_seed_same_poison_on_cpu(tiny_set):
    a = ue.generators.create("em", seed=5, **FAST).generate(tiny_set)
    b = ue.generators.create("em", seed=5, **FAST).generate(tiny_set)
    c = ue.generators.create("em", seed=6, **FAST).generate(tiny_set)
    assert torch.equal(a.images, b.images) and torch.equal(a.delta, b.delta)
    assert a.content_hash() == b.content_hash()
    assert not torch.equal(a.delta, c.delta)


def test_error_minimizing_noise_lowers_the_surrogate_error(tiny_set):
    """On random images only the noise can explain the labels: the surrogate's error must fall.

    Without augmentation (on 16 px images a 4 px crop shifts the noise by a quarter of the image).
    """
    poison = ue.generators.create("em", seed=0, **{**FAST, "steps": 10, "max_rounds": 4, "train_steps": 5,
                                                   "stop_error": 0.0, "augment": "none"}).generate(tiny_set)
    errors = [row["train_error"] for row in poison.metadata["history"]]
    assert errors[-1] <= 0.05 < errors[0]


@pytest.mark.parametrize("loop", ["alternate", "batchwise"])
def test_resume_from_checkpoint_gives_the_same_poison(tiny_set, tmp_path, loop, monkeypatch):
    settings = {**FAST, "stop_error": 0.0, "seed": 1, "loop": loop}
    full = ue.generators.create("em", **{**settings, "max_rounds": 2, "iterations": 12}).generate(tiny_set)
    ckpt = str(tmp_path / "em.pt")
    if loop == "alternate":
        # A run stopped after its first round, then continued with the full budget.
        ue.generators.create("em", checkpoint=ckpt, **{**settings, "max_rounds": 1}).generate(tiny_set)
        resumed = ue.generators.create("em", checkpoint=ckpt, **{**settings, "max_rounds": 2}).generate(tiny_set)
        assert resumed.metadata["rounds"] == 2
    else:
        # Interrupted after the checkpoint at iteration 5, then rerun.
        calls = {"n": 0}
        original = ue.Trainer.step

        def interrupt(self, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 8:
                raise KeyboardInterrupt
            return original(self, *args, **kwargs)

        with monkeypatch.context() as patch:
            patch.setattr(ue.Trainer, "step", interrupt)
            with pytest.raises(KeyboardInterrupt):
                ue.generators.create("em", checkpoint=ckpt, checkpoint_every=5,
                                     **{**settings, "iterations": 12}).generate(tiny_set)
        assert torch.load(ckpt, weights_only=False)["state"]["done"] == 5
        resumed = ue.generators.create("em", checkpoint=ckpt, checkpoint_every=5,
                                       **{**settings, "iterations": 12}).generate(tiny_set)
    assert torch.equal(resumed.delta, full.delta) and torch.equal(resumed.images, full.images)
    with pytest.raises(ValueError, match="another EM run"):
        ue.generators.create("em", checkpoint=ckpt, **{**settings, "steps": 3}).generate(tiny_set)


@pytest.mark.parametrize("kwargs, match", [
    (dict(eps=8), r"eps must be in \(0.0, 1.0\], got 8 \(did you mean 8/255\?\)"),
    (dict(eps=0), "eps"),
    (dict(mode="pixelwise"), "mode"),
    (dict(loop="nested"), "loop"),
    (dict(bn_mode="frozen"), "bn_mode"),
    (dict(steps=0), "steps"),
    (dict(surrogate="resnet19"), "surrogate"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ue.generators.create("em", **kwargs)


def test_batch_larger_than_the_data_is_refused_before_work(tiny_set):
    with pytest.raises(ValueError, match="batch_size"):
        ue.generators.create("em", **{**FAST, "batch_size": 64}).generate(tiny_set)
