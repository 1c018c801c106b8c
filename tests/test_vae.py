"""Rate-constrained VAE purification (D-VAE paper, Yu et al. 2024): loss, KL limit, Alg. 1, caching, Thm. 2."""
import math

import pytest
import torch

import uexlib as ue
from uexlib.defenses.vae import DisentanglingVAEPurifier, RateConstrainedVAE, VAEPurifier, vae_loss
from uexlib.dvae_theory import mixture_kld, theorem2_bounds

SMALL = dict(width=0.25, latent_channels=8, batch_size=20, progress=False)


def test_the_rate_term_passes_no_gradient_below_its_limit():
    x = torch.rand(2, 3, 4, 4)
    for kld_value, slope in ((0.5, 0.0), (3.0, 0.01)):
        kld = torch.tensor(kld_value, requires_grad=True)
        loss = vae_loss(x, x.clone(), None, kld, kld_limit=1.0, kl_weight=0.01)
        loss.backward()
        assert kld.grad.item() == pytest.approx(slope)
        assert loss.item() == pytest.approx(0.01 * max(kld_value, 1.0))
    p_hat = torch.full_like(x, 0.1)
    assert vae_loss(x, x - 0.1, p_hat, torch.tensor(0.0), 0.0, 0.0).item() == pytest.approx(0.01 + 0.0, abs=1e-7)


def test_the_network_shapes():
    model = RateConstrainedVAE((3, 16, 16), 4, width=0.25, latent_channels=8, disentangle=True)
    x_hat, p_hat, kld = model(torch.rand(5, 3, 16, 16), torch.arange(5) % 4)
    assert x_hat.shape == p_hat.shape == (5, 3, 16, 16) and 0 <= x_hat.min() and x_hat.max() <= 1
    assert kld.ndim == 0 and kld.item() >= 0
    with pytest.raises(ValueError, match="even"):
        RateConstrainedVAE((3, 15, 16), 4)


@pytest.fixture(scope="module")
def cifar_small(data_root):
    return ue.load_dataset("cifar10", "train", data_root, per_class=10)


def test_training_holds_the_kl_divergence_at_its_limit(cifar_small):
    """With the rate term the KLD settles at the limit; without it, it grows far past."""
    limited = VAEPurifier(kld_limit=2.0, epochs=6, **SMALL).fit(cifar_small)
    free = VAEPurifier(kld_limit=2.0, epochs=6, kl_weight=0.0, **SMALL).fit(cifar_small)
    last = limited.history["vae"][-1]["kld"]
    print("KLD per epoch, limited:", [round(r["kld"], 2) for r in limited.history["vae"]],
          "free:", [round(r["kld"], 2) for r in free.history["vae"]])
    assert last <= 2.0 * 1.15
    assert free.history["vae"][-1]["kld"] > 3 * 2.0


def test_purified_sets_keep_shape_dtype_labels_and_are_seeded(tiny_set):
    for purifier in (VAEPurifier(epochs=2, **SMALL), DisentanglingVAEPurifier(epochs=2, **SMALL)):
        purified = purifier.apply(tiny_set)
        assert purified.images.shape == tiny_set.images.shape and purified.images.dtype == torch.uint8
        assert torch.equal(purified.labels, tiny_set.labels) and not torch.equal(purified.images, tiny_set.images)
        again = type(purifier)(epochs=2, **SMALL).apply(tiny_set)
        assert torch.equal(again.images, purified.images)


@pytest.mark.parametrize("ablation, stages", [("none", ["stage1", "stage2"]), ("no_stage1", ["stage2"]),
                                              ("no_stage2", ["stage1"]), ("stage1_reconstruct", ["stage1"]),
                                              ("no_i2", ["stage1", "stage2"]), ("no_i3", ["stage1", "stage2"])])
def test_table_7_ablations_train_the_stages_they_need(tiny_set, ablation, stages):
    purifier = DisentanglingVAEPurifier(epochs=1, ablation=ablation, **SMALL).fit(tiny_set)
    assert sorted(purifier.models) == stages
    assert purifier.purify(tiny_set).images.shape == tiny_set.images.shape


def test_stage_one_alone_is_its_perturbation_removed(tiny_set):
    purifier = DisentanglingVAEPurifier(epochs=1, ablation="no_stage2", **SMALL).fit(tiny_set)
    p_hat = purifier.perturbation(tiny_set)
    expected = ue.defenses.base.to_uint8((tiny_set.images.float() / 255 - p_hat).clamp(0, 1))
    assert torch.equal(purifier.purify(tiny_set).images, expected)
    with pytest.raises(ValueError, match="stage must be one of"):
        purifier.perturbation(tiny_set, stage="stage2")


def test_trained_models_are_cached_by_parameters_and_resume(tiny_set, tmp_path):
    first = VAEPurifier(epochs=2, cache_dir=tmp_path, **SMALL)
    out = first.apply(tiny_set)
    assert len(list(tmp_path.glob("*.pt"))) == 1 and len(first.history["vae"]) == 2
    reused = VAEPurifier(epochs=2, cache_dir=tmp_path, **SMALL)
    assert torch.equal(reused.apply(tiny_set).images, out.images) and "vae" not in reused.history
    VAEPurifier(epochs=3, cache_dir=tmp_path, **SMALL).fit(tiny_set)           # other parameters: its own file
    assert len(list(tmp_path.glob("*.pt"))) == 2
    shared = tmp_path / "dvae"
    DisentanglingVAEPurifier(epochs=1, cache_dir=shared, **SMALL).fit(tiny_set)
    ablated = DisentanglingVAEPurifier(epochs=1, cache_dir=shared, ablation="no_i3", **SMALL).fit(tiny_set)
    assert len(list(shared.glob("*.pt"))) == 2 and ablated.history == {}       # both stages reused

    # An interrupted run leaves a per-epoch checkpoint that the rerun resumes from.
    resumed_dir = tmp_path / "resume"
    full = VAEPurifier(epochs=3, **SMALL).fit(tiny_set)
    original_step = torch.optim.Adam.step
    calls = {"n": 0}

    def crash_in_epoch_two(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2 * 2 + 1:            # two batches per epoch: the first step of epoch 3
            raise KeyboardInterrupt
        return original_step(self, *args, **kwargs)

    torch.optim.Adam.step = crash_in_epoch_two
    try:
        with pytest.raises(KeyboardInterrupt):
            VAEPurifier(epochs=3, cache_dir=resumed_dir, **SMALL).fit(tiny_set)
    finally:
        torch.optim.Adam.step = original_step
    assert len(list(resumed_dir.glob("*.partial.pt"))) == 1
    resumed = VAEPurifier(epochs=3, cache_dir=resumed_dir, **SMALL).fit(tiny_set)
    assert [r["loss"] for r in resumed.history["vae"]] == pytest.approx([r["loss"] for r in full.history["vae"]])
    assert not list(resumed_dir.glob("*.partial.pt"))


@pytest.mark.parametrize("name, params, match", [
    ("vae", {"kld_limit": -1.0}, "kld_limit"), ("vae", {"epochs": 0}, "epochs"), ("vae", {"width": 0}, "width"),
    ("dvae", {"kld_limits": (1.0,)}, "kld_limits"), ("dvae", {"ablation": "w/o s1"}, "ablation"),
])
def test_bad_arguments_fail_in_one_line(name, params, match):
    with pytest.raises(ValueError, match=match):
        ue.defenses.create_purifier(name, **params)


def test_purify_before_fit_is_refused(tiny_set):
    with pytest.raises(ValueError, match="call fit"):
        DisentanglingVAEPurifier().purify(tiny_set)


def test_theorem_2_bounds_hold_and_the_divergence_grows_with_separation():
    ratios = [math.exp(t / 4) for t in range(-12, 17)]             # r from 0.05 to 55
    values = [mixture_kld(r) for r in ratios]
    for r, kld in zip(ratios, values):
        low, high = theorem2_bounds(r)
        assert low - 1e-9 <= kld <= high + 1e-9, (r, low, kld, high)
    assert all(b > a for a, b in zip(values, values[1:]) if b > 1e-9)          # eq. 11
    assert abs(mixture_kld(0.0)) < 1e-12
    assert values[-1] == pytest.approx(theorem2_bounds(ratios[-1])[0], abs=1e-6)   # tight for well-separated classes
    with pytest.raises(ValueError, match="r must be > 0"):
        theorem2_bounds(0.0)


def test_an_experiment_gives_purifiers_its_profile_settings_and_seed(tiny_set):
    exp = ue.Experiment(profile=ue.profiles.get("smoke"), train_set=tiny_set, test_set=tiny_set, seed=4)
    purifier = exp.purifier("dvae", kld_limits=(0.5, 2.0))
    assert purifier.params["epochs"] == 1 and purifier.params["seed"] == 4
    assert purifier.params["kld_limits"] == [0.5, 2.0]
    assert exp.purifier("grayscale").params == {}


def test_psnr_by_hand():
    reference = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    noisy = reference.clone()
    noisy[0] += 5                                               # MSE 25: 10 log10(255^2 / 25) = 34.15 dB
    assert ue.quality.psnr(noisy, reference) == pytest.approx((10 * math.log10(255 ** 2 / 25) + 100) / 2)
    with pytest.raises(ValueError, match="same shape"):
        ue.quality.psnr(noisy[:1], reference)
