"""AVATAR diffusion purification: the DDPM, the held-out clean split, diffuse-and-denoise."""
import pytest
import torch

import uexlib as ue
from uexlib.defenses import avatar
from uexlib.defenses.avatar import DiffusionPurifier, SmallUNet

SMALL = dict(steps=20, t_star=5, epochs=1, width=0.125, batch_size=16, progress=False)


def _split(n=80, seed=0):
    """A stand-in for a dataset's whole split: 80 random 16x16 images in 4 classes."""
    gen = torch.Generator().manual_seed(seed)
    return ue.ImageDataset(images=torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=gen),
                           labels=torch.arange(n) % 4, classes=("a", "b", "c", "d"), name="tiny", split="train",
                           source="synthetic")


@pytest.fixture
def split(monkeypatch):
    full = _split()
    monkeypatch.setattr(avatar, "load_dataset", lambda name, split, root=None: full)
    return full


def test_the_unet_predicts_noise_of_the_input_shape():
    model = SmallUNet(3, width=0.125)
    out = model(torch.randn(2, 3, 16, 16), torch.tensor([0, 7]))
    assert out.shape == (2, 3, 16, 16)


def test_the_ddpm_learns_from_held_out_images_only(split):
    poisoned = split.take(torch.arange(40))
    clean = DiffusionPurifier(**SMALL).held_out(poisoned)
    assert len(clean) == 40 and not set(clean.indices.tolist()) & set(poisoned.indices.tolist())
    assert len(DiffusionPurifier(clean_per_class=3, **SMALL).held_out(poisoned)) == 12
    with pytest.raises(ValueError, match="outside the poisoned set"):
        DiffusionPurifier(**SMALL).held_out(split)
    assert DiffusionPurifier(**SMALL).unavailable(poisoned) is None
    assert "outside the poisoned set" in DiffusionPurifier(**SMALL).unavailable(split)


def test_purification_keeps_shape_labels_and_is_seeded(split):
    poisoned = split.take(torch.arange(40))
    purifier = DiffusionPurifier(**SMALL)
    purified = purifier.apply(poisoned)
    assert purified.images.shape == poisoned.images.shape and purified.images.dtype == torch.uint8
    assert torch.equal(purified.labels, poisoned.labels) and not torch.equal(purified.images, poisoned.images)
    assert torch.equal(DiffusionPurifier(**SMALL).apply(poisoned).images, purified.images)
    assert len(purifier.history["ddpm"]) == 1


@pytest.mark.parametrize("params, match", [({"t_star": 0}, "t_star"), ({"t_star": 1000}, "t_star"),
                                           ({"steps": 1}, "steps"), ({"clean_per_class": 0}, "clean_per_class")])
def test_bad_arguments_fail_in_one_line(params, match):
    with pytest.raises(ValueError, match=match):
        ue.defenses.create_purifier("avatar", **params)
