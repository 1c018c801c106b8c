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


def test_a_named_dataset_missing_from_the_root_fails_in_one_line(tmp_path, monkeypatch):
    """No Parquet under the root and no network: the error names the folder and the variable to set."""
    import torchvision.datasets as tvd

    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -2] Name or service not known>")
    monkeypatch.setattr(tvd, "CIFAR10", offline)
    with pytest.raises(FileNotFoundError, match=r"no test.parquet under .*cifar10 .*UEX_DATA_ROOT") as error:
        ue.load_dataset("cifar10", "test", tmp_path)
    assert "\n" not in str(error.value) and error.value.__cause__ is None


def _coordinate_images(n: int) -> torch.Tensor:
    """Channel 0 holds (column + 1) / 64, channel 1 (row + 1) / 64: every pixel knows where it came from."""
    cols = (torch.arange(32) + 1.0) / 64
    x = torch.zeros(n, 3, 32, 32)
    x[:, 0] = cols.view(1, 1, 32)
    x[:, 1] = cols.view(1, 32, 1)
    return x


def test_crop_flip_shifts_at_most_4_px_pads_with_zeros_and_flips_half():
    n = 2000
    x = _coordinate_images(n)
    out = ue.augment(x, "crop_flip", torch.Generator().manual_seed(0))
    assert torch.equal(out, ue.augment(x, "crop_flip", torch.Generator().manual_seed(0)))
    centre_col = (out[:, 0, 16, 16] * 64).round() - 1          # source column of output pixel (16, 16)
    flipped = out[:, 0, 16, 17] < out[:, 0, 16, 16]
    shift_x = torch.where(flipped, centre_col - 15, centre_col - 16)
    shift_y = (out[:, 1, 16, 16] * 64).round() - 1 - 16
    assert shift_x.abs().max() <= 4 and shift_y.abs().max() <= 4
    assert set(shift_x.long().tolist()) == set(range(-4, 5)) == set(shift_y.long().tolist())
    assert 0.45 < flipped.float().mean() < 0.55
    # Rebuild every output from its shift and flip: source pixels inside the image, zeros outside.
    j = torch.arange(32).view(1, 32)
    src_col = torch.where(flipped[:, None], 31 - j + shift_x[:, None], j + shift_x[:, None])
    expected_col = torch.where((src_col >= 0) & (src_col < 32), (src_col + 1.0) / 64, torch.zeros(()))
    src_row = j + shift_y[:, None]
    expected_row = torch.where((src_row >= 0) & (src_row < 32), (src_row + 1.0) / 64, torch.zeros(()))
    visible_rows = (src_row >= 0) & (src_row < 32)
    rows_ok = torch.where(visible_rows[:, :, None], out[:, 0], torch.zeros(()))
    assert torch.allclose(rows_ok, torch.where(visible_rows[:, :, None], expected_col[:, None, :], torch.zeros(())))
    assert torch.allclose(out[:, 1, :, 16], expected_row)
    assert (out[:, 2] == 0).all()


def test_resized_crop_stays_in_range():
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
