"""Datasets held whole as uint8 tensors, deterministic subsets, poison mixing and on-device batches.

Sources, in the order they are tried for a named dataset (``cifar10``, ``cifar100``, ``svhn``,
``mnist``, ``fashion_mnist``):

1. ``<root>/<name>/<split>.parquet`` in the HuggingFace layout (``image`` bytes + ``label``,
   optional ``orig_index`` giving the official order), used as is, no download;
2. torchvision, which downloads into ``<root>`` for real users.

Any other folder is read as a Parquet folder (``<folder>/<split>.parquet``) or an ImageFolder
tree (``<folder>/<split>/<class>/<image>``). The root comes from the ``root`` argument, else the
``UEX_DATA_ROOT`` environment variable, else ``~/.cache/uexlib/data``.
"""
from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .color import color_gray, to_grayscale
from .runtime import check_choice, check_float, check_int, generator

NAMED = {
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "svhn": "SVHN",
    "mnist": "MNIST",
    "fashion_mnist": "Fashion-MNIST",
}
SPLITS = ("train", "test")
AUGMENTS = ("none", "crop_flip", "resized_crop_flip", "crop_flip_color_gray")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class ImageDataset:
    """A labelled image set: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,).

    ``indices`` are the rows of the full split that this set holds, so a subset or a poison can
    always be traced back; ``source`` is the label shown next to any result (e.g.
    ``"CIFAR-10 (JPEG copy)"``).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str
    split: str
    source: str
    indices: torch.Tensor = field(default=None)

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be a uint8 tensor (N, C, H, W), got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"labels must have shape ({len(self.images)},), got {tuple(self.labels.shape)}")
        if self.indices is None:
            object.__setattr__(self, "indices", torch.arange(len(self.images)))

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def fingerprint(self) -> str:
        """sha256 over name, split, row indices, labels and pixels: equal iff the data are equal."""
        digest = hashlib.sha256(f"{self.name}/{self.split}/{tuple(self.images.shape)}".encode())
        for tensor in (self.indices, self.labels, self.images):
            digest.update(tensor.contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    def take(self, rows: torch.Tensor) -> "ImageDataset":
        """The rows ``rows`` of this set, in that order."""
        return replace(self, images=self.images[rows], labels=self.labels[rows], indices=self.indices[rows])

    def with_images(self, images: torch.Tensor, source: str | None = None) -> "ImageDataset":
        if images.shape != self.images.shape:
            raise ValueError(f"images must have shape {tuple(self.images.shape)}, got {tuple(images.shape)}")
        return replace(self, images=images, source=source or self.source)


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The dataset root: ``root``, else ``$UEX_DATA_ROOT``, else ``~/.cache/uexlib/data``."""
    if root is None:
        root = os.environ.get("UEX_DATA_ROOT") or Path.home() / ".cache" / "uexlib" / "data"
    return Path(root).expanduser()


def available(root: str | os.PathLike | None = None) -> list[dict]:
    """Which datasets can be loaded from ``root`` without a download, one dict per dataset."""
    base = data_root(root)
    rows = []
    for name in NAMED:
        parquet = all((base / name / f"{s}.parquet").is_file() for s in SPLITS)
        rows.append({"name": name, "root": str(base), "parquet": parquet, "torchvision_download": not parquet})
    if base.is_dir():
        for folder in sorted(p for p in base.iterdir() if p.is_dir() and p.name not in NAMED):
            kind = _folder_kind(folder, "train")
            if kind:
                rows.append({"name": str(folder), "root": str(base), "parquet": kind == "parquet",
                             "torchvision_download": False})
    return rows


def load_dataset(name: str, split: str = "train", root: str | os.PathLike | None = None,
                 per_class: int | None = None, subset_seed: int = 0, download: bool = True) -> ImageDataset:
    """Load a dataset split whole as uint8, optionally a deterministic ``per_class`` subset.

    ``name`` is one of ``cifar10, cifar100, svhn, mnist, fashion_mnist`` or a folder path (Parquet
    or ImageFolder layout). Subsetting happens before decoding, so a small subset is fast.
    """
    check_choice("split", split, SPLITS)
    if per_class is not None:
        check_int("per_class", per_class, low=1)
    path = Path(name).expanduser()
    if name in NAMED:
        folder = data_root(root) / name
        if (folder / f"{split}.parquet").is_file():
            return _load_parquet(folder / f"{split}.parquet", name, split, NAMED[name], per_class, subset_seed)
        try:
            dataset = _load_torchvision(name, split, data_root(root), download)
        except (OSError, RuntimeError) as error:    # offline, or a corrupt archive
            raise FileNotFoundError(
                f"dataset {name!r}: no {split}.parquet under {folder} and torchvision could not "
                f"{'download' if download else 'find'} it ({type(error).__name__}: {error}); set root= or "
                f"$UEX_DATA_ROOT to a folder holding {name}/{split}.parquet") from None
    elif path.is_dir():
        kind = _folder_kind(path, split)
        if kind == "parquet":
            return _load_parquet(path / f"{split}.parquet", path.name, split, path.name, per_class, subset_seed)
        if kind != "imagefolder":
            raise FileNotFoundError(f"{path} holds neither {split}.parquet nor an ImageFolder tree {split}/<class>/")
        dataset = _load_imagefolder(path, split)
    else:
        raise ValueError(f"dataset {name!r} is neither a known name ({', '.join(NAMED)}) nor an existing folder")
    return subset_per_class(dataset, per_class, subset_seed) if per_class else dataset


def _folder_kind(folder: Path, split: str) -> str | None:
    if (folder / f"{split}.parquet").is_file():
        return "parquet"
    if (folder / split).is_dir() and any(p.is_dir() for p in (folder / split).iterdir()):
        return "imagefolder"
    return None


def _subset_rows(labels: np.ndarray, per_class: int | None, seed: int) -> np.ndarray:
    """Row indices: the first ``per_class`` of each class in a seeded permutation, sorted."""
    if per_class is None:
        return np.arange(len(labels))
    order = np.random.default_rng(seed).permutation(len(labels))
    chosen = []
    for cls in np.unique(labels):
        rows = order[labels[order] == cls]
        if len(rows) < per_class:
            raise ValueError(f"per_class must be at most {len(rows)} (the size of class {cls}), got {per_class}")
        chosen.append(rows[:per_class])
    return np.sort(np.concatenate(chosen))


def subset_per_class(dataset: ImageDataset, per_class: int | None, seed: int = 0) -> ImageDataset:
    """A deterministic subset with ``per_class`` images of every class (``None``: everything)."""
    if per_class is None:
        return dataset
    check_int("per_class", per_class, low=1)
    return dataset.take(torch.from_numpy(_subset_rows(dataset.labels.numpy(), per_class, seed)))


def _decode(blob: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(blob))
    image = image.convert("L" if image.mode in ("L", "1", "I;16", "I") else "RGB")
    return np.asarray(image)


def _to_nchw(arrays: list[np.ndarray] | np.ndarray) -> torch.Tensor:
    stack = np.stack(arrays) if isinstance(arrays, list) else arrays
    if stack.ndim == 3:
        stack = stack[:, :, :, None]
    return torch.from_numpy(np.ascontiguousarray(stack.transpose(0, 3, 1, 2)))


def _load_parquet(path: Path, name: str, split: str, display: str, per_class, subset_seed) -> ImageDataset:
    import pyarrow.parquet as pq

    columns = pq.read_schema(path).names
    meta = pq.read_table(path, columns=[c for c in ("label", "orig_index") if c in columns]).to_pandas()
    # The official order (orig_index) makes row i of this set row i of the torchvision dataset.
    order = np.argsort(meta["orig_index"].to_numpy(), kind="stable") if "orig_index" in columns \
        else np.arange(len(meta))
    labels = meta["label"].to_numpy()[order]
    rows = _subset_rows(labels, per_class, subset_seed)
    blobs = pq.read_table(path, columns=["image"]).column("image").take(order[rows]).to_pylist()
    blobs = [b["bytes"] if isinstance(b, dict) else b for b in blobs]
    if blobs and blobs[0][:2] == b"\xff\xd8":
        display = f"{display} (JPEG copy)"
    classes_file = path.parent / "classes.json"
    num_classes = int(labels.max()) + 1
    classes = tuple(json.loads(classes_file.read_text())) if classes_file.is_file() \
        else tuple(str(i) for i in range(num_classes))
    return ImageDataset(images=_to_nchw([_decode(b) for b in blobs]),
                        labels=torch.from_numpy(labels[rows].astype(np.int64)), classes=classes,
                        name=name, split=split, source=display, indices=torch.from_numpy(rows))


def _load_torchvision(name: str, split: str, root: Path, download: bool) -> ImageDataset:
    import torchvision.datasets as tvd

    train = split == "train"
    folder = str(root / name)
    if name == "svhn":
        ds = tvd.SVHN(folder, split=split, download=download)
        images, labels = torch.from_numpy(ds.data), torch.as_tensor(ds.labels)
        classes = tuple(str(i) for i in range(10))
    else:
        cls = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100, "mnist": tvd.MNIST,
               "fashion_mnist": tvd.FashionMNIST}[name]
        ds = cls(folder, train=train, download=download)
        data = ds.data.numpy() if isinstance(ds.data, torch.Tensor) else ds.data
        images, labels, classes = _to_nchw(data), torch.as_tensor(ds.targets), tuple(ds.classes)
    return ImageDataset(images=images.contiguous(), labels=labels.long(), classes=classes, name=name,
                        split=split, source=NAMED[name])


def _load_imagefolder(path: Path, split: str) -> ImageDataset:
    classes = sorted(p.name for p in (path / split).iterdir() if p.is_dir())
    arrays, labels = [], []
    for label, cls in enumerate(classes):
        for file in sorted((path / split / cls).iterdir()):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                arrays.append(_decode(file.read_bytes()))
                labels.append(label)
    if not arrays:
        raise FileNotFoundError(f"no images under {path / split}")
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"images under {path / split} differ in size ({sorted(shapes)[:3]}...); "
                         "resize them to one size first")
    return ImageDataset(images=_to_nchw(arrays), labels=torch.tensor(labels), classes=tuple(classes),
                        name=path.name, split=split, source=path.name)


def grayscale_set(dataset: ImageDataset) -> ImageDataset:
    """The same images in grayscale (BT.601 luma, rounded to uint8) on every channel."""
    gray = to_grayscale(dataset.images.float()).round().clamp(0, 255).to(torch.uint8)
    return dataset.with_images(gray.contiguous(), source=f"{dataset.source}, grayscale")


def mix_poison(clean: ImageDataset, poisoned: ImageDataset, ratio: float, variant: str = "mixed",
               seed: int = 0) -> ImageDataset:
    """Partial protection as in REM (Fu et al., ICLR 2022), Sec. 5.2 and Table 2.

    A seeded fraction ``ratio`` of the samples is protected. ``variant="mixed"``: the training set
    is the protected samples (poisoned images) plus the remaining clean ones; ``"clean_only"``: the
    protected samples are removed and only the remaining clean ones are kept.
    """
    check_float("ratio", ratio, 0.0, 1.0)
    check_choice("variant", variant, ("mixed", "clean_only"))
    if poisoned.images.shape != clean.images.shape or not torch.equal(poisoned.labels, clean.labels):
        raise ValueError("poisoned must hold the same samples (shape and labels) as clean")
    protected = torch.zeros(len(clean), dtype=torch.bool)
    count = int(round(ratio * len(clean)))
    protected[torch.randperm(len(clean), generator=torch.Generator().manual_seed(seed))[:count]] = True
    if variant == "clean_only":
        return clean.take(torch.nonzero(~protected).flatten())
    images = torch.where(protected[:, None, None, None], poisoned.images, clean.images)
    return clean.with_images(images, source=f"{clean.source}, {ratio:.0%} protected")


def augment(x: torch.Tensor, kind: str, gen: torch.Generator, crop_padding_px: int = 4) -> torch.Tensor:
    """Per-sample random augmentation of a batch (float, or uint8 for ``crop_flip``), batched on its device.

    ``crop_flip``: random crop after zero padding by ``crop_padding_px`` and horizontal flip (the
    CIFAR recipe), done as one gather whose result is already channels_last;
    ``resized_crop_flip``: random resized crop (area 8-100 %, aspect 3/4-4/3) and flip, for
    large images (float input); ``crop_flip_color_gray``: crop and flip, then the color jitter and
    random grayscale of :func:`uexlib.color.color_gray` (float input).
    """
    if kind == "none":
        return x
    n, _, h, w = x.shape
    dev = x.device
    if kind == "crop_flip":
        pad = crop_padding_px
        padded = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n,), device=dev, generator=gen)
        dx = torch.randint(0, 2 * pad + 1, (n,), device=dev, generator=gen)
        flip = torch.rand(n, device=dev, generator=gen) < 0.5
        columns = torch.arange(w, device=dev)
        rows = (dy[:, None] + torch.arange(h, device=dev))[:, :, None]
        # A flipped crop reads its window's columns right to left: crop and flip in one gather.
        cols = (dx[:, None] + torch.where(flip[:, None], columns.flip(0), columns))[:, None, :]
        # Advanced indexing puts the gathered (N, H, W) first and channels last: a channels_last view.
        return padded[torch.arange(n, device=dev)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    if kind == "crop_flip_color_gray":
        return color_gray(augment(x, "crop_flip", gen, crop_padding_px), gen)
    if kind == "resized_crop_flip":
        area = torch.empty(n, device=dev).uniform_(0.08, 1.0, generator=gen)
        log_ratio = torch.empty(n, device=dev).uniform_(np.log(3 / 4), np.log(4 / 3), generator=gen)
        aspect = log_ratio.exp()
        scale_w = (area * aspect).sqrt().clamp(max=1.0)
        scale_h = (area / aspect).sqrt().clamp(max=1.0)
        shift_x = (torch.rand(n, device=dev, generator=gen) * 2 - 1) * (1 - scale_w)
        shift_y = (torch.rand(n, device=dev, generator=gen) * 2 - 1) * (1 - scale_h)
        theta = torch.zeros(n, 2, 3, device=dev, dtype=x.dtype)
        theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = scale_w, shift_x, scale_h, shift_y
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        flip = torch.rand(n, device=dev, generator=gen) < 0.5
        return torch.where(flip[:, None, None, None], x.flip(3), x)
    check_choice("augment", kind, AUGMENTS)


class DeviceLoader:
    """Batches of a uint8 image tensor that lives on the compute device.

    The data are moved once; each epoch draws a permutation and augmentations from a generator
    seeded with ``(seed, epoch)``, so an epoch's batches are the same whether or not training was
    resumed in between. Yields float batches in [0, 1] and int64 labels.
    """

    def __init__(self, dataset: ImageDataset, batch_size: int, dev: torch.device, shuffle: bool = True,
                 augment: str = "none", seed: int = 0, drop_last: bool = False):
        check_int("batch_size", batch_size, low=1)
        check_choice("augment", augment, AUGMENTS)
        self.images = dataset.images.to(dev)
        self.labels = dataset.labels.to(dev)
        self.batch_size, self.device, self.shuffle = batch_size, dev, shuffle
        self.augment, self.seed, self.drop_last = augment, seed, drop_last
        self.epoch = 0

    def __len__(self) -> int:
        full, rest = divmod(len(self.images), self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def endless(self, skip_batches: int = 0):
        """Batches of successive epochs from epoch 0, skipping the first ``skip_batches``.

        A run resumed after ``skip_batches`` steps sees the same batches as one never interrupted.
        """
        first_epoch, skip = divmod(skip_batches, len(self))
        for epoch in itertools.count(first_epoch):
            self.set_epoch(epoch)
            yield from itertools.islice(self, skip if epoch == first_epoch else 0, None)

    def __iter__(self):
        gen = generator(self.seed * 1_000_003 + self.epoch, self.device)
        count = len(self.images)
        order = torch.randperm(count, device=self.device, generator=gen) if self.shuffle \
            else torch.arange(count, device=self.device)
        for b in range(len(self)):
            rows = order[b * self.batch_size:(b + 1) * self.batch_size]
            if self.augment == "crop_flip":  # cropped as uint8: a quarter of the memory traffic
                x = augment(self.images[rows], "crop_flip", gen).float().div_(255)
            else:
                x = augment(self.images[rows].float().div_(255), self.augment, gen)
            yield x, self.labels[rows], rows
