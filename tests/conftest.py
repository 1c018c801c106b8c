import os
from pathlib import Path

import pytest
import torch

import uexlib as ue

REPO = Path(__file__).resolve().parent.parent


def shared_data_root() -> Path:
    """The offline dataset copies: $UEX_DATA_ROOT, else ../shared/data beside the repository."""
    return Path(os.environ.get("UEX_DATA_ROOT") or REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = shared_data_root()
    if not (root / "cifar10" / "train.parquet").is_file():
        pytest.fail(f"the CIFAR-10 Parquet copy is missing under {root}; set UEX_DATA_ROOT")
    return root


@pytest.fixture
def tiny_set() -> ue.ImageDataset:
    """40 random 3x16x16 images in 4 classes: for shapes and bounds only, never for accuracy."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 16, 16), dtype=torch.uint8, generator=gen)
    return ue.ImageDataset(images=images, labels=torch.arange(40) % 4, classes=("a", "b", "c", "d"),
                           name="tiny", split="train", source="synthetic")


@pytest.fixture(scope="session")
def small_cifar(data_root):
    """20 real CIFAR-10 training images per class and 10 test images per class."""
    return (ue.load_dataset("cifar10", "train", data_root, per_class=20),
            ue.load_dataset("cifar10", "test", data_root, per_class=10))


def small_cnn(seed: int = 0) -> torch.nn.Module:
    """The lab CNN at a quarter width, initialized from ``seed``."""
    torch.manual_seed(seed)
    return ue.models.create("cnn", 10, 3, width=0.25)


@pytest.fixture(autouse=True, scope="session")
def _poison_store(tmp_path_factory):
    """Poisons made by tests (and the notebooks they run) go to a fresh store, never the user's."""
    previous = os.environ.get("UEX_STORE")
    os.environ["UEX_STORE"] = str(tmp_path_factory.mktemp("poison_store"))
    yield
    if previous is None:
        del os.environ["UEX_STORE"]
    else:
        os.environ["UEX_STORE"] = previous
