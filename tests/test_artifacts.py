import json

import numpy as np
import pytest
import torch
from PIL import Image

import uexlib as ue
from uexlib.artifacts import VOLATILE_KEYS

META = {"method": "test", "eps": 8 / 255, "wall_s": 1.5, "git_commit": "abc", "history": [{"round": 0, "wall_s": 0.7}]}


def noise(shape, seed=1, eps=8 / 255):
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1) * eps


@pytest.fixture
def poison(tiny_set):
    """Class-wise: one noise pattern per class."""
    return ue.Poison.from_perturbation(tiny_set, noise((4, 3, 16, 16)), META)


@pytest.fixture
def samplewise(tiny_set):
    return ue.Poison.from_perturbation(tiny_set, noise((40, 3, 16, 16)), META)


def test_classwise_round_trip_is_exact(poison, tmp_path):
    path = poison.save(tmp_path / "p.npz")
    assert (tmp_path / "p.npz.sha256").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npz", "p.npz.sha256"]  # no temporary files left
    back = ue.Poison.load(path, dataset=poison.dataset)
    assert back.classwise and torch.equal(back.delta, poison.delta)
    assert torch.equal(back.images, poison.images) and torch.equal(back.labels, poison.labels)
    assert back.metadata == poison.metadata and back.content_hash() == poison.content_hash()
    assert back.dataset.fingerprint() == poison.dataset.fingerprint()
    assert torch.equal(poison.images, ue.artifacts.quantize(poison.dataset.images, poison.per_sample_delta()))


@pytest.mark.parametrize("eps, stored", [(8 / 255, "int8"), (1.0, "int16")])
def test_samplewise_round_trip_keeps_images_and_delta_in_agreement(tiny_set, tmp_path, eps, stored):
    made = ue.Poison.from_perturbation(tiny_set, noise((40, 3, 16, 16), eps=eps), META)
    published = (made.images.float() - tiny_set.images.float()) / 255
    assert not made.classwise and torch.equal(made.delta, published)
    path = made.save(tmp_path / "p.npz")
    with np.load(path) as npz:
        assert set(npz.files) == {"header", "diff", "indices", "labels"}
        assert npz["diff"].dtype == stored and json.loads(str(npz["header"]))["diff_dtype"] == stored
    back = ue.Poison.load(path, dataset=tiny_set)
    assert torch.equal(back.images, made.images) and torch.equal(back.delta, made.delta)
    assert torch.equal(back.labels, made.labels) and back.content_hash() == made.content_hash()


def test_content_hash_ignores_volatile_keys_but_not_pixels(tiny_set, tmp_path):
    delta = noise((40, 3, 16, 16))
    first = ue.Poison.from_perturbation(tiny_set, delta, META)
    rerun = ue.Poison.from_perturbation(tiny_set, delta, {**META, "wall_s": 9.0, "git_commit": "def", "device": "x",
                                                          "history": [{"round": 0, "wall_s": 3.1}]})
    assert set(VOLATILE_KEYS) >= {"wall_s", "git_commit", "device", "timestamp", "uexlib_version"}
    assert first.content_hash() == rerun.content_hash()
    first.save(tmp_path / "a.npz"), rerun.save(tmp_path / "b.npz")
    hashes = [(tmp_path / name).read_text().split()[0] for name in ("a.npz.sha256", "b.npz.sha256")]
    assert hashes == [first.content_hash()] * 2
    one_pixel = delta.clone()
    one_pixel[3, 1, 5, 5] += 2 / 255
    assert ue.Poison.from_perturbation(tiny_set, one_pixel, META).content_hash() != first.content_hash()
    assert ue.Poison.from_perturbation(tiny_set, delta, {**META, "eps": 4 / 255}).content_hash() != first.content_hash()


def test_corrupted_file_is_refused(poison, tmp_path):
    path = poison.save(tmp_path / "p.npz")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ue.ArtifactError, match="corrupted"):
        ue.Poison.load(path, dataset=poison.dataset)


def test_any_flipped_byte_is_refused_or_harmless(samplewise, tmp_path):
    """Flipping a byte anywhere gives an ArtifactError, or (zip timestamps) the very same poison."""
    path = samplewise.save(tmp_path / "p.npz")
    raw = path.read_bytes()
    refused = 0
    for position in np.random.default_rng(0).choice(len(raw), 60, replace=False):
        broken = bytearray(raw)
        broken[position] ^= 0x5A
        path.write_bytes(bytes(broken))
        try:
            back = ue.Poison.load(path, dataset=samplewise.dataset)
        except ue.ArtifactError:
            refused += 1
        else:
            assert torch.equal(back.images, samplewise.images) and back.metadata == samplewise.metadata
    assert refused > 50


def test_bad_header_and_other_versions_are_refused(poison, tmp_path):
    path = poison.save(tmp_path / "p.npz")
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(str(arrays["header"]))
    old_version = json.dumps({**header, "format_version": 1})
    for text, message in [("{not json", "corrupted"), (old_version, "format version 1")]:
        np.savez_compressed(path, **{**arrays, "header": np.array(text)})
        with pytest.raises(ue.ArtifactError, match=message):
            ue.Poison.load(path, dataset=poison.dataset)


def test_missing_or_damaged_hash_file_is_refused(poison, tmp_path):
    path = poison.save(tmp_path / "p.npz")
    sidecar = tmp_path / "p.npz.sha256"
    sidecar.write_text("0" * 64 + "  p.npz\n")
    with pytest.raises(ue.ArtifactError, match="corrupted"):
        ue.Poison.load(path, dataset=poison.dataset)
    sidecar.unlink()
    with pytest.raises(ue.ArtifactError, match="missing"):
        ue.Poison.load(path, dataset=poison.dataset)


def test_load_rebuilds_a_named_dataset(data_root, tmp_path):
    clean = ue.load_dataset("cifar10", "train", data_root, per_class=5)
    made = ue.Poison.from_perturbation(clean, noise((50, 3, 32, 32)), {"method": "test"})
    path = made.save(tmp_path / "p.npz")
    back = ue.Poison.load(path, root=data_root)
    assert back.dataset.fingerprint() == clean.fingerprint() and torch.equal(back.images, made.images)
    assert torch.equal(back.dataset.indices, clean.indices) and torch.equal(back.delta, made.delta)
    with pytest.raises(ue.ArtifactError, match="cannot rebuild"):
        ue.Poison.load(path, root=tmp_path / "empty")


def test_other_dataset_is_refused(poison, tiny_set, tmp_path):
    path = poison.save(tmp_path / "p.npz")
    other = tiny_set.with_images(torch.flip(tiny_set.images, dims=[0]))
    with pytest.raises(ue.ArtifactError, match="not the expected"):
        ue.Poison.load(path, dataset=other)
    with pytest.raises(ue.ArtifactError, match="shape"):
        ue.Poison.load(path, dataset=tiny_set.take(torch.arange(8)))
    with pytest.raises(ue.ArtifactError, match="cannot rebuild"):  # "tiny" is no dataset name
        ue.Poison.load(path, root=tmp_path)


def test_changed_labels_and_disagreeing_delta_are_refused(poison, samplewise, tiny_set):
    with pytest.raises(ue.ArtifactError, match="labels"):
        ue.Poison(images=poison.images, delta=poison.delta, labels=(tiny_set.labels + 1) % 4, dataset=tiny_set)
    with pytest.raises(ue.ArtifactError, match="exactly"):
        ue.Poison(images=samplewise.images, delta=samplewise.delta + 1e-4, labels=tiny_set.labels, dataset=tiny_set)


@pytest.mark.parametrize("norm, scale", [("linf", 1.0), ("l2", 1 / 16), ("l1", 1 / 300)])
def test_check_budget_accepts_within_and_refuses_beyond(norm, scale):
    eps = 8 / 255 / scale
    delta = noise((6, 3, 8, 8), eps=1.0)
    order = {"linf": float("inf"), "l2": 2, "l1": 1}[norm]
    at_budget = delta / torch.linalg.vector_norm(delta.flatten(1), ord=order, dim=1)[:, None, None, None] * eps
    ue.check_budget(at_budget, norm, eps)
    ue.check_budget(at_budget * 0.5, norm, eps)
    beyond = at_budget.clone()
    beyond[4] *= 1.01
    with pytest.raises(ValueError, match=f"{norm} budget"):
        ue.check_budget(beyond, norm, eps)
    beyond[4, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=norm):
        ue.check_budget(beyond, norm, eps)


def test_from_perturbation_leaves_its_inputs_alone(tiny_set):
    images, labels, delta = tiny_set.images.clone(), tiny_set.labels.clone(), noise((40, 3, 16, 16))
    kept, meta = delta.clone(), json.loads(json.dumps(META))
    made = ue.Poison.from_perturbation(tiny_set, delta, meta)
    assert torch.equal(tiny_set.images, images) and torch.equal(tiny_set.labels, labels)
    assert torch.equal(delta, kept) and meta == META
    assert made.metadata["dataset"]["fingerprint"] == tiny_set.fingerprint() and "uexlib_version" in made.metadata
    ten = ue.Poison.from_perturbation(tiny_set.take(torch.arange(4)), noise((4, 3, 16, 16)), {}, classwise=True)
    assert ten.classwise and not ue.Poison.from_perturbation(tiny_set.take(torch.arange(4)), noise((4, 3, 16, 16)),
                                                             {}).classwise


def test_samplewise_cifar10_poison_fits_in_100_mb(tmp_path):
    """Pessimistic noise, uniform in {-8..8}/255, on 2,000 random images, scaled to 50,000 images."""
    gen = torch.Generator().manual_seed(0)
    clean = ue.ImageDataset(images=torch.randint(0, 256, (2000, 3, 32, 32), dtype=torch.uint8, generator=gen),
                            labels=torch.arange(2000) % 10, classes=tuple("abcdefghij"), name="synthetic",
                            split="train", source="synthetic")
    delta = torch.randint(-8, 9, (2000, 3, 32, 32), generator=gen).float() / 255
    path = ue.Poison.from_perturbation(clean, delta, {"method": "test"}).save(tmp_path / "p.npz")
    estimate = path.stat().st_size / len(clean) * 50_000
    print(f"estimated CIFAR-10 sample-wise poison file: {estimate / 1e6:.1f} MB")
    assert estimate < 100e6


def test_publish_writes_the_exact_pixels(poison, tmp_path):
    folder = poison.publish(tmp_path / "pub")
    files = sorted(folder.glob("*/*.png"))
    assert len(files) == 40 and (folder / "poison.json").is_file()
    first = np.asarray(Image.open(folder / "a" / "000000.png"))
    assert np.array_equal(first, poison.images[0].permute(1, 2, 0).numpy())
    with pytest.raises(FileExistsError):
        poison.publish(folder)
