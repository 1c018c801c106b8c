"""Purifiers (grayscale, jpeg, bdr, lowpass, iss): checked on constructed images and real CIFAR-10."""
import pytest
import torch

import uexlib as ue
from uexlib.defenses import create_purifier


@pytest.fixture(scope="module")
def cifar(data_root):
    return ue.load_dataset("cifar10", "train", data_root, per_class=5)


def _constant(colours) -> ue.ImageDataset:
    """One 8x8 image per RGB colour."""
    images = torch.tensor(colours, dtype=torch.uint8).view(-1, 3, 1, 1).expand(-1, 3, 8, 8).contiguous()
    return ue.ImageDataset(images=images, labels=torch.arange(len(colours)), classes=tuple(map(str, colours)),
                           name="colours", split="train", source="constructed")


@pytest.mark.parametrize("name, params", [("grayscale", {}), ("jpeg", {"quality": 10}), ("jpeg", {"quality": 90}),
                                          ("bdr", {"bits": 2}), ("lowpass", {"filter": "mean"}),
                                          ("lowpass", {"filter": "median"}), ("lowpass", {"filter": "gaussian"}),
                                          ("iss", {"squeeze": "grayscale"}), ("iss", {"squeeze": "bdr"}),
                                          ("lfu", {"epochs": 2})])
def test_purified_sets_keep_shape_dtype_labels_and_leave_the_input_alone(cifar, name, params):
    before = cifar.images.clone()
    out = create_purifier(name, **params).apply(cifar)
    assert torch.equal(cifar.images, before)
    assert out.images.shape == cifar.images.shape and out.images.dtype == torch.uint8
    assert torch.equal(out.labels, cifar.labels) and torch.equal(out.indices, cifar.indices)
    assert not torch.equal(out.images, cifar.images)


def test_grayscale_follows_the_thesis_equation():
    """Thesis eq. 3.1 and its worked example: magenta gives Y = 105, green Y = 150."""
    out = create_purifier("grayscale").apply(_constant([(255, 0, 255), (0, 255, 0), (10, 20, 30)]))
    assert out.images[:, :, 0, 0].tolist() == [[105, 105, 105], [150, 150, 150], [18, 18, 18]]


def test_bit_depth_reduction_leaves_only_its_levels(cifar):
    assert set(create_purifier("bdr", bits=1).apply(cifar).images.unique().tolist()) <= {0, 255}
    assert set(create_purifier("bdr", bits=2).apply(cifar).images.unique().tolist()) <= {0, 85, 170, 255}


def test_jpeg_removes_fine_noise_more_at_lower_quality(cifar):
    """A +-8/255 checkerboard is high-frequency: quality 10 erases more of it than quality 90."""
    checker = ((torch.arange(32).view(-1, 1) + torch.arange(32)) % 2 * 16 - 8).to(torch.int16)
    noisy = cifar.with_images((cifar.images.to(torch.int16) + checker).clamp(0, 255).to(torch.uint8))

    def remaining(quality):
        out = create_purifier("jpeg", quality=quality).apply(noisy).images.float()
        return ((out - create_purifier("jpeg", quality=quality).apply(cifar).images.float()) * checker).mean()

    assert remaining(10) < 0.5 * remaining(90)
    assert remaining(90) > 4


def test_lowpass_filters_on_a_single_bright_pixel():
    dot = torch.zeros(1, 3, 9, 9, dtype=torch.uint8)
    dot[..., 4, 4] = 252
    data = ue.ImageDataset(images=dot, labels=torch.zeros(1, dtype=torch.long), classes=("a",), name="dot",
                           split="train", source="constructed")
    mean = create_purifier("lowpass", filter="mean").apply(data).images[0, 0]
    assert mean[3:6, 3:6].eq(28).all() and mean.sum() == 9 * 28            # 252 / 9 over the 3x3 window
    assert create_purifier("lowpass", filter="median").apply(data).images.eq(0).all()   # an outlier vanishes
    gauss = create_purifier("lowpass", filter="gaussian", sigma=1.0).apply(data).images[0, 0].float()
    assert gauss[4, 4] == gauss.max() and gauss[4, 3] == gauss[3, 4] and gauss[4, 3] > gauss[3, 3] > 0


def test_iss_is_the_squeeze_it_names(cifar):
    assert torch.equal(create_purifier("iss").apply(cifar).images, create_purifier("jpeg", quality=10).apply(cifar).images)
    assert torch.equal(create_purifier("iss", squeeze="grayscale").apply(cifar).images,
                       create_purifier("grayscale").apply(cifar).images)
    assert torch.equal(create_purifier("iss", squeeze="bdr", bits=3).apply(cifar).images,
                       create_purifier("bdr", bits=3).apply(cifar).images)


def test_purifying_a_poison_purifies_its_images(cifar):
    delta = torch.full((len(cifar), 3, 32, 32), 8 / 255)
    poison = ue.Poison.from_perturbation(cifar, delta, {"method": "test"})
    assert torch.equal(create_purifier("grayscale").apply(poison).images,
                       create_purifier("grayscale").apply(poison.as_dataset()).images)


@pytest.mark.parametrize("name, params, match", [
    ("jpeg", {"quality": 0}, "quality"), ("jpeg", {"quality": 101}, "quality"), ("bdr", {"bits": 9}, "bits"),
    ("lowpass", {"filter": "box"}, "filter.*mean, median, gaussian"), ("lowpass", {"kernel": 4}, "kernel must be odd"),
    ("iss", {"squeeze": "png"}, "squeeze"), ("lfu", {"batch_size": 0}, "batch_size"), ("grayscale", {"weights": 1}, "takes no parameter 'weights'")])
def test_bad_purifier_arguments_are_named(name, params, match):
    with pytest.raises(ValueError, match=match):
        create_purifier(name, **params)


def test_lfu_projects_out_most_of_a_class_wise_pattern(data_root):
    """A class-wise +-8/255 pattern is what a linear probe learns first: its directions carry it."""
    cifar = ue.load_dataset("cifar10", "train", data_root, per_class=1000)
    gen = torch.Generator().manual_seed(0)
    pattern = (torch.randint(0, 2, (10, 3, 32, 32), generator=gen).float() * 2 - 1) * 8 / 255
    poison = ue.Poison.from_perturbation(cifar, pattern, {"method": "test"}, classwise=True)
    lfu = create_purifier("lfu", device="cpu")
    purified = lfu.apply(poison)
    flat = pattern.flatten(1)
    kept = (flat - (flat @ lfu.basis) @ lfu.basis.T).norm(dim=1) / flat.norm(dim=1)
    assert kept.max() < 0.75
    assert lfu.basis.shape == (3 * 32 * 32, 10)
    assert torch.allclose(lfu.basis.T @ lfu.basis, torch.eye(10), atol=1e-4)
    assert purified.images.dtype == torch.uint8 and purified.images.shape == cifar.images.shape
    with pytest.raises(ValueError, match="call fit"):
        create_purifier("lfu").purify(cifar)
