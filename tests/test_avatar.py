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


def test_every_step_kept_is_the_original_process_and_respacing_keeps_its_noise_levels():
    full = DiffusionPurifier(t_star=100, progress=False)
    kept, abar, betas = full.reverse_schedule()
    assert kept == list(range(100, -1, -1))
    torch.testing.assert_close(betas, torch.linspace(1e-4, 0.02, 1000)[:101].flip(0), rtol=1e-4, atol=1e-7)
    kept, abar, betas = DiffusionPurifier(t_star=100, sample_steps=11, progress=False).reverse_schedule()
    assert kept == list(range(100, -1, -10))
    # The respaced steps from each kept step down to the clean image compound to that step's abar.
    torch.testing.assert_close(torch.cumprod((1 - betas).flip(0), 0).flip(0), abar, atol=1e-6, rtol=0)
    assert (betas > torch.linspace(1e-4, 0.02, 1000)[:101].flip(0)[::10]).all()


def test_the_ddpm_trains_on_the_steps_purification_visits_and_is_shared_across_them(split, tmp_path):
    poisoned = split.take(torch.arange(40))
    params = dict(SMALL, train_max_step=6, cache_dir=str(tmp_path))
    seen = []
    purifier = DiffusionPurifier(**params)
    original = SmallUNet.forward
    def spy(self, x, t):
        seen.append(t)
        return original(self, x, t)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SmallUNet, "forward", spy)
        purifier.fit(poisoned)
    assert int(torch.cat(seen).max()) <= 5
    # t_star and sample_steps change only the sampling: the trained DDPM is reused from the cache.
    assert len(list(tmp_path.glob("avatar_ddpm_*.pt"))) == 1
    again = DiffusionPurifier(**dict(params, t_star=4, sample_steps=2)).fit(poisoned)
    assert again.history == {} and len(list(tmp_path.glob("avatar_ddpm_*.pt"))) == 1
    purified = again.purify(poisoned)
    assert purified.images.shape == poisoned.images.shape and not torch.equal(purified.images, poisoned.images)


@pytest.mark.parametrize("params, match", [({"t_star": 0}, "t_star"), ({"t_star": 1000}, "t_star"),
                                           ({"steps": 1}, "steps"), ({"clean_per_class": 0}, "clean_per_class"),
                                           ({"sample_steps": 0}, "sample_steps"), ({"sample_steps": 102}, "sample_steps"),
                                           ({"train_max_step": 100}, "train_max_step"),
                                           ({"train_max_step": 1001}, "train_max_step")])
def test_bad_arguments_fail_in_one_line(params, match):
    with pytest.raises(ValueError, match=match):
        ue.defenses.create_purifier("avatar", **params)
