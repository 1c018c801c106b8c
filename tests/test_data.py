import pytest
import torch

import uexlib as ue


def test_cifar10_parquet_subset_in_official_order(data_root):
    train = ue.load_dataset("cifar10", "train", data_root)
    assert train.images.shape == (50_000, 3, 32, 32) and train.images.dtype == torch.uint8
    # torchvision's CIFAR-10 training labels begin 6, 9, 9, 4, 1 (frog, truck, truck, deer, car).
    assert train.labels[:5].tolist() == [6, 9, 9, 4, 1]
    assert train.source == "CIFAR-10 (JPEG copy)"
    sub = ue.load_dataset("cifar10", "train", data_root, per_class=30, subset_seed=1)
    assert sub.labels.bincount().tolist() == [30] * 10
    assert torch.equal(sub.images, train.images[sub.indices])
    assert torch.equal(sub.labels, train.labels[sub.indices])


def test_subsets_are_deterministic_and_seeded(data_root):
    a = ue.load_dataset("cifar10", "test", data_root, per_class=5, subset_seed=0)
    b = ue.load_dataset("cifar10", "test", data_root, per_class=5, subset_seed=0)
    c = ue.load_dataset("cifar10", "test", data_root, per_class=5, subset_seed=1)
    assert torch.equal(a.indices, b.indices) and a.fingerprint() == b.fingerprint()
    assert not torch.equal(a.indices, c.indices) and a.fingerprint() != c.fingerprint()


def test_root_from_environment_variable(data_root, monkeypatch):
    monkeypatch.setenv("UEX_DATA_ROOT", str(data_root))
    mnist = ue.load_dataset("mnist", "test", per_class=3)
    assert mnist.images.shape == (30, 1, 28, 28) and mnist.source == "MNIST"


def test_any_parquet_folder_and_imagefolder_tree(data_root, tiny_set, tmp_path):
    folder = ue.load_dataset(data_root / "fashion_mnist", "test", per_class=2)
    assert folder.images.shape == (20, 1, 28, 28)
    poison = ue.Poison(images=tiny_set.images, delta=torch.zeros(40, 3, 16, 16), labels=tiny_set.labels,
                       dataset=tiny_set, metadata={"method": "none"})
    poison.publish(tmp_path / "own" / "train")
    loaded = ue.load_dataset(tmp_path / "own", "train")
    assert loaded.classes == tiny_set.classes
    order = torch.argsort(tiny_set.labels, stable=True)
    assert torch.equal(loaded.images, tiny_set.images[order])


def test_bad_arguments_are_named(data_root):
    with pytest.raises(ValueError, match="split"):
        ue.load_dataset("cifar10", "validation", data_root)
    with pytest.raises(ValueError, match="per_class"):
        ue.load_dataset("cifar10", "test", data_root, per_class=0)
    with pytest.raises(ValueError, match="per_class must be at most 1000"):
        ue.load_dataset("cifar10", "test", data_root, per_class=1001)
    with pytest.raises(ValueError, match="neither a known name"):
        ue.load_dataset("cifar11", "test", data_root)


def test_crop_flip_is_per_sample_seeded_and_bounded():
    x = torch.rand(64, 3, 32, 32)
    a = ue.augment(x, "crop_flip", torch.Generator().manual_seed(0))
    b = ue.augment(x, "crop_flip", torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    # Each output is its input shifted by at most 4 px, possibly mirrored: some pixels survive.
    changed = (a != x).flatten(1).any(1)
    assert 0 < changed.sum() <= 64
    same_row_values = [set(x[i, 0, 10].tolist()) & set(a[i, 0].flatten().tolist()) for i in range(8)]
    assert all(len(s) > 0 for s in same_row_values)
    big = ue.augment(torch.rand(4, 3, 64, 64), "resized_crop_flip", torch.Generator().manual_seed(0))
    assert big.shape == (4, 3, 64, 64) and big.min() >= 0 and big.max() <= 1


def test_mix_poison_variants(tiny_set):
    poisoned = tiny_set.with_images(255 - tiny_set.images)
    mixed = ue.mix_poison(tiny_set, poisoned, ratio=0.25, variant="mixed", seed=0)
    is_poisoned = (mixed.images == poisoned.images).flatten(1).all(1)
    assert len(mixed) == 40 and is_poisoned.sum() == 10
    clean_only = ue.mix_poison(tiny_set, poisoned, ratio=0.25, variant="clean_only", seed=0)
    assert len(clean_only) == 30
    assert set(clean_only.indices.tolist()) == set(torch.nonzero(~is_poisoned).flatten().tolist())
    with pytest.raises(ValueError, match="ratio"):
        ue.mix_poison(tiny_set, poisoned, ratio=1.5)
    with pytest.raises(ValueError, match="variant"):
        ue.mix_poison(tiny_set, poisoned, ratio=0.5, variant="half")
