"""Model-free poisons: synthetic shortcuts (sc, lsp), the one-pixel shortcut (ops), autoregressive noise (ar)."""
import pytest
import torch

import uexlib as ue
from uexlib.generators.ops import one_pixel_choices
from uexlib.generators.sc import synthetic_noise, synthetic_points


@pytest.fixture(scope="module")
def cifar(data_root):
    return ue.load_dataset("cifar10", "train", data_root, per_class=50)


@pytest.mark.parametrize("name, norm", [("sc", "linf"), ("lsp", "l2"), ("ops", "l0"), ("ar", "l2")])
def test_budget_round_trip_and_determinism(cifar, tmp_path, name, norm):
    before = cifar.images.clone()
    poison = ue.generators.create(name).generate(cifar)
    assert torch.equal(cifar.images, before) and poison.metadata["norm"] == norm
    ue.check_budget(poison.per_sample_delta(), norm, poison.metadata["radius"])
    assert (poison.images != cifar.images).any()
    loaded = ue.Poison.load(poison.save(tmp_path / f"{name}.npz"), dataset=cifar)
    assert loaded.content_hash() == poison.content_hash()
    assert ue.generators.create(name).generate(cifar).content_hash() == poison.content_hash()


@pytest.mark.parametrize("name", ["sc", "lsp", "ar"])
def test_the_seed_draws_other_clusters(cifar, name):
    assert not torch.equal(ue.generators.create(name, seed=1).generate(cifar).images,
                           ue.generators.create(name, seed=2).generate(cifar).images)


def test_sc_reaches_its_linf_radius_and_lsp_its_l2_radius(cifar):
    sc = ue.generators.create("sc", eps=8 / 255).generate(cifar).per_sample_delta()
    assert (sc.flatten(1).abs().amax(1) * 255).round().eq(8).float().mean() > 0.9   # clipping at 0 or 1 aside
    lsp = ue.generators.create("lsp", eps=1.0).generate(cifar).per_sample_delta()
    assert lsp.flatten(1).norm(dim=1).max() <= 1.0 and lsp.flatten(1).norm(dim=1).median() > 0.9


def test_synthetic_noise_is_flat_on_patches_and_separable_by_class(cifar):
    noise = synthetic_noise(cifar, patch=8, class_sep=10.0, seed=0)
    blocks = noise.unfold(2, 8, 8).unfold(3, 8, 8)                                  # (N, C, 4, 4, 8, 8)
    assert torch.equal(blocks, blocks[..., :1, :1].expand_as(blocks))
    points = synthetic_points(cifar.labels, 10, 48, 10.0, torch.Generator().manual_seed(0))
    centres = torch.stack([points[cifar.labels == k].mean(0) for k in range(10)])
    nearest = torch.cdist(points, centres).argmin(1)
    assert (nearest == cifar.labels).float().mean() > 0.99


def test_ops_puts_one_pixel_of_one_colour_on_every_image_of_a_class(cifar):
    poison = ue.generators.create("ops").generate(cifar)
    pixels = poison.metadata["pixels"]
    assert len({(p["row"], p["column"], tuple(p["colour"])) for p in pixels}) == 10
    for p in pixels:
        rows = cifar.labels == p["class"]
        values = poison.images[rows][:, :, p["row"], p["column"]]
        assert torch.equal(values, (torch.tensor(p["colour"]) * 255).to(torch.uint8).expand_as(values))
        changed = (poison.images[rows] != cifar.images[rows]).any(1)              # (n, H, W)
        assert changed.flatten(1).sum(1).max() <= 1


def test_ops_picks_the_position_where_a_class_is_constant():
    """Class 0 is black at (2, 5) in every image: white there deviates by exactly 1, with no spread."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8, generator=gen)
    labels = torch.arange(40) % 2
    images[labels == 0, :, 2, 5] = 0
    data = ue.ImageDataset(images=images, labels=labels, classes=("a", "b"), name="constructed", split="train",
                           source="constructed")
    assert one_pixel_choices(data)[0] == (2, 5, (1, 1, 1))


@pytest.mark.parametrize("name, params, match", [("sc", {"eps": 8}, "did you mean 8/255"),
                                                 ("sc", {"patch": 0}, "patch"), ("lsp", {"eps": -1}, "eps"),
                                                 ("ops", {"pixels": 2}, "takes no parameter 'pixels'"),
                                                 ("ar", {"eps": 0}, "eps"), ("ar", {"max_raw_l2": -1}, "max_raw_l2")])
def test_bad_arguments_are_named(name, params, match):
    with pytest.raises(ValueError, match=match):
        ue.generators.create(name, **params)


def test_seedless_ops_runs_from_the_experiment_and_the_command_line(tiny_set, tmp_path, data_root, monkeypatch):
    exp = ue.Experiment(profile=ue.profiles.get("smoke"), train_set=tiny_set, test_set=tiny_set, seed=3)
    assert exp.generator("ops").generate(tiny_set).metadata["seed"] is None
    # An experiment passes progress= to every generator alike; the instant ones have no bar to show.
    assert exp.generator("sc", progress=False).generate(tiny_set).metadata["method"] == "sc"
    monkeypatch.setenv("UEX_DATA_ROOT", str(data_root))
    from uexlib import cli
    assert cli.main(["poison", "ops", "--profile", "smoke", "--out", str(tmp_path / "ops.npz")]) == 0
    assert cli.main(["poison", "ops", "--profile", "smoke", "-p", "seed", "1", "--out", str(tmp_path / "x.npz")]) == 2


def test_ar_noise_is_annihilated_by_its_own_filter_only(cifar):
    from uexlib.generators.ar import ar_fields, response, select_processes
    processes = select_processes(10, 3, torch.Generator().manual_seed(0), min_response=10.0, max_raw_l2=50.0)
    gen = torch.Generator().manual_seed(1)
    for k, own in enumerate(processes):
        noise = ar_fields(own, 4, 32, 32, gen)
        assert torch.isfinite(noise).all()
        assert response(own, noise).max() < 1e-9                       # the detecting filter gives zero
        others = [response(p, noise).min() for j, p in enumerate(processes) if j < k]
        assert all(r >= 10.0 for r in others)                           # earlier classes' filters respond
    poison = ue.generators.create("ar").generate(cifar)
    norms = poison.per_sample_delta().flatten(1).norm(dim=1)
    assert norms.max() <= 1.0 and norms.median() > 0.95
    assert len(poison.metadata["coefficients"]) == 10
