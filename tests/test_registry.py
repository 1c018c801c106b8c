"""Contracts every registered method must meet: parametrized over the registries, so a method is
tested the day it is registered."""
import json

import pytest
import torch

import uexlib as ue
from uexlib import defenses, generators, models
from uexlib.registry import ParameterError, Registry, UnknownNameError

REGISTRIES = {"model": models.REGISTRY, "generator": generators.GENERATORS, "defense": defenses.DEFENSES,
              "purifier": defenses.PURIFIERS}


@pytest.mark.parametrize("kind", REGISTRIES)
def test_unknown_names_list_what_is_available(kind):
    registry = REGISTRIES[kind]
    with pytest.raises(UnknownNameError) as info:
        registry.get("no-such-method")
    message = str(info.value)
    assert message.startswith(f"unknown {kind} 'no-such-method'; available: ")
    assert all(name in message for name in registry.names())
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", generators.list_generators())
def test_generator_unknown_parameter_is_named_with_the_accepted_ones(name):
    accepted = ".*seed" if "seed" in generators.GENERATORS.defaults(name) else ""
    with pytest.raises(ParameterError, match=rf"generator '{name}' takes no parameter 'epsilon'; accepted: {accepted}"):
        generators.create(name, epsilon=8)


def test_profile_settings_a_generator_does_not_take_are_an_error():
    bad = ue.profiles.get("smoke", generators={"em": {"rounds": 3}})
    with pytest.raises(ParameterError, match="profile 'smoke': generator 'em' takes no parameter 'rounds'"):
        generators.create("em", profile=bad)


def test_listing_shows_every_entry_with_its_defaults():
    text = generators.GENERATORS.format_list()
    for row in generators.GENERATORS.describe():
        assert f"{row['name']}: " in text
    assert "eps=8/255" in text and "mode='samplewise'" in text
    # Only radii and step sizes are shown in 1/255 units; 0.8 is a probability, not 204/255.
    assert "jitter_p=0.8" in ue.defenses.DEFENSES.format_list()


def test_a_registry_refuses_duplicates_and_can_unregister():
    registry = Registry("thing")
    registry.register("a")(lambda x=1: x)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a")(lambda: None)
    assert registry.create("a", x=2) == 2
    with pytest.raises(ParameterError, match="accepted: x"):
        registry.create("a", y=2)
    registry.unregister("a")
    assert registry.names() == []


@pytest.mark.parametrize("name", generators.list_generators())
def test_generator_contract_on_a_tiny_set(name, tiny_set):
    """Budget, labels, input untouched, metadata, and the same seed gives the same poison on CPU.

    A generator without randomness (``ops``) takes no seed and must give the same poison twice.
    """
    before = tiny_set.images.clone()
    accepted = generators.GENERATORS.defaults(name)
    fixed = {k: v for k, v in {"batch_size": 16, "device": "cpu", "progress": False}.items() if k in accepted}
    seeded = "seed" in accepted

    def make(seed):
        return generators.create(name, profile="smoke", **({"seed": seed} if seeded else {}),
                                 **fixed).generate(tiny_set)

    poison, again, other = make(1), make(1), make(2)
    assert torch.equal(tiny_set.images, before)
    assert torch.equal(poison.labels, tiny_set.labels) and poison.images.dtype == torch.uint8
    meta = poison.metadata
    assert {"method", "params", "norm", "radius", "seed", "dataset", "wall_s"} <= set(meta)
    assert meta["seed"] == (1 if seeded else None) and meta["dataset"]["fingerprint"] == tiny_set.fingerprint()
    ue.check_budget(poison.per_sample_delta(), meta["norm"], meta["radius"])
    assert (poison.images != tiny_set.images).any()
    assert poison.content_hash() == again.content_hash()
    assert (poison.content_hash() != other.content_hash()) == seeded
    json.dumps(meta)


# What the 10-image classes of tiny_set need: staged training's D^s must fit in a class, and
# ST-Full's two phases need two epochs; the VAEs are cut to one small epoch.
_TINY = {"st": {"acm_per_class": 5}, "st-cg": {"acm_per_class": 5}, "st-full": {"acm_per_class": 5},
         **{name: {"epochs": 1, "width": 0.25, "progress": False} for name in ("vae", "dvae")},
         "avatar": {"epochs": 1, "width": 0.125, "steps": 20, "t_star": 5, "progress": False}}


@pytest.mark.parametrize("name", defenses.names())
def test_defense_contract(name, tiny_set):
    defense = defenses.create(name, **_TINY.get(name, {}))
    json.dumps(defense.key())
    epochs = 2 if name == "st-full" else 1
    result = ue.train(ue.models.create("cnn", 4, 3, width=0.125), tiny_set, tiny_set, epochs=epochs, batch_size=8,
                      defense=defense, device="cpu", progress=False)
    assert len(result.history) == epochs and (result.history.test_acc.between(0, 100)).all()


@pytest.mark.parametrize("name", defenses.purifier_names())
def test_purifier_contract(name, tiny_set, monkeypatch):
    if name == "avatar":        # its DDPM learns from the split's images outside the set: give it a split
        split = ue.ImageDataset(images=torch.cat([tiny_set.images, tiny_set.images.flip(0)]),
                                labels=torch.cat([tiny_set.labels, tiny_set.labels.flip(0)]), classes=tiny_set.classes,
                                name=tiny_set.name, split=tiny_set.split, source=tiny_set.source)
        monkeypatch.setattr(defenses.avatar, "load_dataset", lambda *args, **kwargs: split)
    before = tiny_set.images.clone()
    purified = defenses.create_purifier(name, **_TINY.get(name, {})).apply(tiny_set)
    json.dumps(defenses.create_purifier(name).key())
    assert isinstance(purified, ue.ImageDataset) and purified.images.dtype == torch.uint8
    assert purified.images.shape == tiny_set.images.shape and torch.equal(purified.labels, tiny_set.labels)
    assert torch.equal(tiny_set.images, before)


def test_purifier_interface_fits_then_maps(tiny_set, monkeypatch):
    """A toy purifier that fits a per-channel mean shows the two-step interface."""

    class MeanShift(defenses.Purifier):
        params = {}

        def fit(self, train_set):
            self.mean = train_set.images.float().mean(dim=(0, 2, 3), keepdim=True)
            return self

        def purify(self, dataset):
            return dataset.with_images((dataset.images.float() - self.mean + 128).clamp(0, 255).to(torch.uint8))

    defenses.PURIFIERS.register("mean-shift-test")(MeanShift)
    try:
        purified = defenses.create_purifier("mean-shift-test").apply(tiny_set)
        assert abs(purified.images.float().mean().item() - 128) < 2
        test_purifier_contract("mean-shift-test", tiny_set, monkeypatch)
    finally:
        defenses.PURIFIERS.unregister("mean-shift-test")
