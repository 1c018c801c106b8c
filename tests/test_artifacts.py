import numpy as np
import pytest
import torch
from PIL import Image

import uexlib as ue
from uexlib.artifacts import quantize


@pytest.fixture
def poison(tiny_set):
    delta = (torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1) * 8 / 255
    images = quantize(tiny_set.images, delta[tiny_set.labels])
    return ue.Poison(images=images, delta=delta, labels=tiny_set.labels.clone(), dataset=tiny_set,
                     metadata={"method": "test", "eps": 8 / 255})


def test_round_trip_keeps_everything(poison, tmp_path):
    path = poison.save(tmp_path / "p.npz")
    assert (tmp_path / "p.npz.sha256").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    back = ue.Poison.load(path, expect=poison.dataset)
    assert torch.equal(back.images, poison.images) and torch.equal(back.labels, poison.labels)
    assert torch.allclose(back.delta, poison.delta, atol=1e-4) and back.classwise
    assert back.metadata == poison.metadata
    assert back.dataset.fingerprint() == poison.dataset.fingerprint()


def test_corrupted_file_is_refused(poison, tmp_path):
    path = poison.save(tmp_path / "p.npz")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ue.ArtifactError, match="corrupted"):
        ue.Poison.load(path)


def test_other_dataset_is_refused(poison, tiny_set, tmp_path):
    path = poison.save(tmp_path / "p.npz")
    other = tiny_set.with_images(torch.flip(tiny_set.images, dims=[0]))
    with pytest.raises(ue.ArtifactError, match="not the expected"):
        ue.Poison.load(path, expect=other)
    with pytest.raises(ue.ArtifactError, match="shape"):
        ue.Poison.load(path, expect=tiny_set.take(torch.arange(8)))


def test_changed_labels_are_refused(poison, tiny_set):
    with pytest.raises(ue.ArtifactError, match="labels"):
        ue.Poison(images=poison.images, delta=poison.delta, labels=(tiny_set.labels + 1) % 4, dataset=tiny_set)


def test_publish_writes_the_exact_pixels(poison, tmp_path):
    folder = poison.publish(tmp_path / "pub")
    files = sorted(folder.glob("*/*.png"))
    assert len(files) == 40 and (folder / "poison.json").is_file()
    first = np.asarray(Image.open(folder / "a" / "000000.png"))
    assert np.array_equal(first, poison.images[0].permute(1, 2, 0).numpy())
    with pytest.raises(FileExistsError):
        poison.publish(folder)
