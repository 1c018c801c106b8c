"""Training-time augmentation defenses: each checked on constructed batches, then run in the trainer."""
import pytest
import torch
import torch.nn.functional as F

import uexlib as ue
from uexlib.defenses import create
from uexlib.defenses.base import StepContext
from uexlib.defenses.coarse_dropout import dropout_mask
from uexlib.defenses.cutout import cutout_mask

from conftest import small_cnn

AUGMENTATIONS = ["cutout", "mixup", "cutmix", "autoaugment", "cg", "gaussian-noise", "coarse-dropout",
                 "median-blur", "gaussian-filter", "ueraser"]


class _Trainer:
    """What a StepContext needs of a trainer: the model and its forward."""

    def __init__(self, model):
        self.step_model = model

    def forward(self, x):
        return self.step_model(x)


def _ctx(model=None, seed=0):
    return StepContext(_Trainer(model), epoch=0, step=0, generator=torch.Generator().manual_seed(seed))


def test_a_cutout_square_has_the_set_size_inside_the_image_and_is_clipped_at_borders():
    mask = cutout_mask(500, 32, 32, 16, torch.Generator().manual_seed(0), torch.device("cpu"))
    cut = (mask == 0).sum(dim=(1, 2, 3))
    assert cut.max() == 16 * 16 and cut.min() >= 8 * 8        # a centre in a corner keeps a quarter
    assert (cut == 256).float().mean() > 0.2                    # centres in [8, 24)^2 cut the full square
    x = torch.rand(4, 3, 32, 32)
    out, y = create("cutout", size=8).transform(x, torch.arange(4), _ctx())
    assert torch.equal(y, torch.arange(4)) and ((out == 0) | (out == x)).all()


def test_coarse_dropout_zeroes_exactly_one_channel_of_each_dropped_block():
    mask = dropout_mask((50, 3, 32, 32), grid=3, p=1.0, gen=torch.Generator().manual_seed(0),
                        device=torch.device("cpu"))
    assert ((1 - mask).sum(1) == 1).all()                       # p = 1: one channel per pixel, always
    blocks = (torch.arange(32) * 3 // 32)
    for row in range(3):                                        # one channel per block: constant on it
        for col in range(3):
            block = mask[:, :, blocks == row][:, :, :, blocks == col]
            assert (block == block[:, :, :1, :1]).all()
    none = dropout_mask((50, 3, 32, 32), grid=4, p=0.0, gen=None, device=torch.device("cpu"))
    assert none.eq(1).all()


def test_mixup_weights_sum_to_one_and_cutmix_lam_is_the_kept_share():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    x = torch.rand(1, 3, 8, 8).expand(6, -1, -1, -1)
    y = torch.full((6,), 2)
    for name in ("mixup", "cutmix"):                            # equal images and labels: plain cross-entropy
        loss, logits = create(name).loss(x, y, _ctx(model))
        assert torch.allclose(loss, F.cross_entropy(model(x), y))
    cutmix = create("cutmix")
    zeros, ones = torch.zeros(2, 3, 32, 32), torch.ones(2, 3, 32, 32)
    for seed in range(20):
        mixed, lam = cutmix.mix(zeros, ones, 0.6, torch.Generator().manual_seed(seed))
        assert mixed.mean().item() == pytest.approx(1 - lam)
    blend, lam = create("mixup").mix(zeros, ones, 0.3, None)
    assert lam == 0.3 and torch.allclose(blend, torch.full_like(blend, 0.7))


def test_gaussian_noise_has_its_sigma_and_the_grayscale_variant_is_gray():
    x = torch.full((8, 3, 32, 32), 0.5)
    out, _ = create("gaussian-noise", sigma=0.05).transform(x, torch.zeros(8), _ctx())
    assert (out - x).std().item() == pytest.approx(0.05, rel=0.05)
    gray, _ = create("gaussian-noise", sigma=0.1, grayscale=True).transform(x, torch.zeros(8), _ctx())
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    assert out.min() >= 0 and out.max() <= 1


def test_blurs_spread_a_bright_pixel_or_remove_it():
    dot = torch.zeros(1, 3, 9, 9)
    dot[..., 4, 4] = 1.0
    assert create("median-blur").transform(dot, None, _ctx())[0].eq(0).all()
    blurred = create("gaussian-filter").transform(dot, None, _ctx())[0]
    assert blurred.sum().item() == pytest.approx(3.0, rel=0.02) and blurred[0, 0, 4, 4] < 0.2


def test_autoaugment_draws_a_sub_policy_per_image_from_the_step_generator():
    x = torch.rand(1, 3, 32, 32).expand(32, -1, -1, -1).contiguous()
    defense = create("autoaugment")
    first, _ = defense.transform(x, None, _ctx(seed=0))
    again, _ = defense.transform(x, None, _ctx(seed=0))
    other, _ = defense.transform(x, None, _ctx(seed=1))
    assert torch.equal(first, again) and not torch.equal(first, other)
    changes = (first - x).abs().flatten(1).mean(1)
    assert len(torch.unique(changes.round(decimals=3))) >= 8      # one image, many different treatments
    assert first.min() >= 0 and first.max() <= 1


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_each_augmentation_trains_reproducibly(tiny_set, name):
    kwargs = dict(iterations=3, batch_size=16, lr=0.05, schedule="constant", progress=False, device="cpu", seed=0)

    def history():
        torch.manual_seed(0)
        model = ue.models.create("cnn", 4, 3, width=0.125)
        return ue.train(model, tiny_set, tiny_set, defense=create(name), **kwargs).history

    first, second = history(), history()
    assert first[["train_loss", "train_acc", "test_acc"]].equals(second[["train_loss", "train_acc", "test_acc"]])


@pytest.mark.parametrize("name, params, match", [
    ("cutout", {"size": 0}, "size"), ("autoaugment", {"policy": "mnist"}, "policy.*cifar10"), ("mixup", {"alpha": 0}, "alpha"), ("cutmix", {"alpha": -1}, "alpha"),
    ("cg", {"gray_p": 2}, "gray_p"), ("gaussian-noise", {"sigma": 0}, "sigma"), ("coarse-dropout", {"p": 1.5}, "p"),
    ("median-blur", {"kernel": 2}, "kernel"), ("gaussian-filter", {"sigma": -1}, "sigma"),
    ("early-stop", {"patience": 0}, "patience"), ("ueraser", {"repeats": 0}, "repeats"),
    ("ueraser", {"adversarial_epochs": -1}, "adversarial_epochs"), ("early-stop", {"val_fraction": 0.9}, "val_fraction")])
def test_bad_defense_arguments_are_named(name, params, match):
    with pytest.raises(ValueError, match=match):
        create(name, **params)


def test_early_stop_holds_out_a_split_per_class_and_stops_after_its_patience(tiny_set, tmp_path):
    defense = create("early-stop", patience=2, val_fraction=0.2)
    kept, held = defense.hold_out(tiny_set, seed=0)
    assert len(kept) == 32 and len(held) == 8 and (held.labels.bincount() == 2).all()
    assert not set(kept.indices.tolist()) & set(held.indices.tolist())
    # A learning rate too small to move the model: validation never improves after epoch 0.
    kwargs = dict(epochs=10, batch_size=8, lr=1e-9, schedule="constant", progress=False, device="cpu")
    torch.manual_seed(0)
    result = ue.train(ue.models.create("cnn", 4, 3, width=0.125), tiny_set, tiny_set, defense=defense, **kwargs)
    assert len(result.history) == 3 and result.best_epoch == 0 and "val_acc" in result.history
    # A run resumed from the checkpoint of a stopped run does not train on.
    path = tmp_path / "stopped.pt"
    for _ in range(2):
        torch.manual_seed(0)
        again = ue.train(ue.models.create("cnn", 4, 3, width=0.125), tiny_set, tiny_set, defense=defense,
                         checkpoint=path, **kwargs)
        assert len(again.history) == 3
    with pytest.raises(ValueError, match="holds out its own validation set"):
        ue.train(ue.models.create("cnn", 4, 3, width=0.125), tiny_set, defense=defense, val_set=tiny_set, **kwargs)


def test_early_stop_shows_a_clean_ratio_of_each_classes_held_out_rows_as_their_clean_originals(tiny_set):
    protected = tiny_set.with_images(255 - tiny_set.images, source="inverted")
    defense = create("early-stop", val_fraction=0.5, clean_ratio=0.4, clean_set=tiny_set)
    kept, held = defense.hold_out(protected, seed=0)
    assert len(kept) == len(held) == 20
    clean_rows = (held.images == tiny_set.images[held.indices]).flatten(1).all(1)
    protected_rows = (held.images == protected.images[held.indices]).flatten(1).all(1)
    assert (clean_rows ^ protected_rows).all()
    assert held.labels[clean_rows].bincount(minlength=4).tolist() == [2, 2, 2, 2]   # 40 % of 5 per class
    assert torch.equal(kept.images, protected.images[kept.indices])                 # training rows unchanged
    plain = create("early-stop", val_fraction=0.5).hold_out(protected, seed=0)[1]
    assert torch.equal(plain.indices, held.indices) and torch.equal(plain.images, protected.images[held.indices])


@pytest.mark.parametrize("params, match", [
    ({"clean_ratio": 0.3}, "clean_ratio > 0 needs clean_set"), ({"clean_ratio": 1.5}, "clean_ratio"),
    ({"inner": "early-stop"}, "inner must be a training-time defense other than early-stop"),
    ({"inner": "cutot"}, "cutout"), ({"clean_set": "train.parquet"}, "clean_set must be")])
def test_early_stop_refuses_bad_arguments_in_one_line(params, match):
    with pytest.raises(ValueError, match=match):
        create("early-stop", **params)


def test_early_stop_refuses_a_clean_set_without_the_training_rows(tiny_set):
    other = ue.ImageDataset(images=tiny_set.images[:8], labels=tiny_set.labels[:8], classes=tiny_set.classes,
                            name="tiny", split="train", source="synthetic")
    defense = create("early-stop", val_fraction=0.5, clean_ratio=1.0, clean_set=other)
    with pytest.raises(ValueError, match="does not hold the clean originals"):
        defense.hold_out(tiny_set, seed=0)


def test_early_stop_trains_under_its_inner_defense():
    defense = create("early-stop", inner=create("cutout", size=4))
    x, y = torch.rand(8, 3, 8, 8) + 1, torch.arange(8) % 4
    cut, same = defense.transform(x, y, _ctx())
    assert torch.equal(same, y) and ((cut == 0).flatten(1).sum(1) >= 3 * 4).all()   # a square cut per image
    assert defense.params["inner"] == {"name": "cutout", "size": 4}
    assert defense.key()["inner"] == create("cutout", size=4).key()
    at = create("early-stop", inner="pgd-at")
    assert at.params["inner"]["name"] == "pgd-at" and at.params["inner"]["eps"] == 4 / 255


def test_stopping_point_reads_a_shorter_patience_off_a_longer_run(small_cifar):
    train_set, test_set = small_cifar
    kwargs = dict(epochs=8, batch_size=32, lr=0.05, schedule="constant", progress=False, device="cpu")
    long = ue.train(small_cnn(), train_set, test_set, defense=create("early-stop", patience=8, val_fraction=0.2),
                    **kwargs)
    assert len(long.history) == 8
    val = long.history.val_acc.tolist()
    for patience in (1, 2):
        short = ue.train(small_cnn(), train_set, test_set,
                         defense=create("early-stop", patience=patience, val_fraction=0.2), **kwargs)
        last, kept = ue.defenses.early_stop.stopping_point(val, patience)
        assert len(short.history) == last + 1 and short.best_epoch == kept
        assert short.history.val_acc.tolist() == val[:last + 1]
        assert short.test_acc == pytest.approx(long.history.test_acc[kept])
    assert ue.defenses.early_stop.stopping_point([10, 20, 15, 12, 30], 2) == (3, 1)
    assert ue.defenses.early_stop.stopping_point([10, 20, 25], 1) == (2, 2)


def test_an_experiment_gives_early_stop_its_clean_training_set(small_cifar):
    exp = ue.Experiment(profile=ue.profiles.get("smoke"), train_set=small_cifar[0], test_set=small_cifar[1],
                        seed=0, device="cpu")
    defense = exp.defense("early-stop", clean_ratio=0.5, inner=exp.defense("pgd-at", eps=2 / 255))
    assert defense.clean_set is small_cifar[0] and defense.inner.params["eps"] == 2 / 255


def test_dropout_acts_on_the_classifier_input_in_training_only():
    torch.manual_seed(0)
    model = ue.models.create("cnn", 10, 3, width=0.125)
    x = torch.rand(4, 3, 32, 32)
    model.eval()
    before = model(x)
    create("dropout", p=0.5).attach(model)
    assert torch.equal(model(x), before)                        # eval mode: unchanged
    model.train()
    features = {}
    model.fc.register_forward_hook(lambda m, inputs, out: features.setdefault("x", inputs[0]))
    model(x)
    zero_share = (features["x"] == 0).float().mean().item()
    assert 0.35 < zero_share < 0.75                               # about half the features dropped
    with pytest.raises(ValueError, match="nn.Linear"):
        create("dropout").attach(torch.nn.Conv2d(3, 3, 1))


def test_ueraser_trains_on_the_worst_of_its_views_for_its_adversarial_epochs():
    torch.manual_seed(0)
    model = ue.models.create("cnn", 10, 3, width=0.125).eval()      # eval: batch statistics do not mix views
    x, y = torch.rand(16, 3, 32, 32), torch.randint(0, 10, (16,))

    def loss(epoch, **params):
        return create("ueraser", **params).loss(x, y, _ctx(model, seed=3) if epoch == 0 else
                                                StepContext(_Trainer(model), epoch, 0, torch.Generator().manual_seed(3)))

    single, _ = loss(0, repeats=1)
    worst, logits = loss(0, repeats=5, adversarial_epochs=2)
    assert worst > single and logits.shape == (16, 10)
    assert torch.equal(loss(2, repeats=5, adversarial_epochs=2)[0], single)     # after W epochs: one view
    assert torch.equal(loss(0, repeats=5, adversarial_epochs=0)[0], single)     # UEraser-Lite
    assert torch.equal(loss(9, repeats=5, adversarial_epochs=None)[0], worst)   # UEraser-Max
    views = create("ueraser").augment(x, torch.Generator().manual_seed(0))
    assert views.shape == x.shape and views.min() >= 0 and views.max() <= 1 and not torch.equal(views, x)
