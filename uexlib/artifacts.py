"""The poison artifact: one type for every generator, saved atomically with a content hash."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .data import ImageDataset
from .runtime import atomic_path, sha256_file

FORMAT_VERSION = 1


class ArtifactError(ValueError):
    """A poison file that is corrupted, or does not match what the caller expects."""


@dataclass(frozen=True)
class Poison:
    """What a data owner publishes, plus how it was made.

    ``images``: the perturbed training images, uint8 (N, C, H, W); ``delta``: the perturbation on
    the [0, 1] pixel scale, (N, C, H, W) for sample-wise noise or (K, C, H, W) for class-wise noise
    (``delta[labels[i]]`` belongs to image ``i``); ``labels``: int64 (N,), unchanged by an
    availability poison; ``dataset``: the clean set it was made from; ``metadata``: method, every
    parameter, norm, radius, seed, surrogate, wall time, library version and git commit.
    """

    images: torch.Tensor
    delta: torch.Tensor
    labels: torch.Tensor
    dataset: ImageDataset
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.images.shape != self.dataset.images.shape or self.images.dtype != torch.uint8:
            raise ArtifactError(f"images must be uint8 of shape {tuple(self.dataset.images.shape)}, "
                                f"got {self.images.dtype} {tuple(self.images.shape)}")
        if not torch.equal(self.labels, self.dataset.labels):
            raise ArtifactError("labels differ from the clean dataset's: an availability poison keeps labels")
        if self.delta.shape[1:] != self.images.shape[1:] or len(self.delta) not in (len(self.images),
                                                                                     self.dataset.num_classes):
            raise ArtifactError(f"delta must have shape (N or num_classes, C, H, W), got {tuple(self.delta.shape)}")

    @property
    def classwise(self) -> bool:
        return len(self.delta) != len(self.images)

    def as_dataset(self) -> ImageDataset:
        """The poisoned training set, ready for :func:`uexlib.train`."""
        return self.dataset.with_images(self.images, source=f"{self.dataset.source}, {self.metadata.get('method', 'poison')}")

    def per_sample_delta(self) -> torch.Tensor:
        return self.delta[self.labels] if self.classwise else self.delta

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path`` (an ``.npz``) and ``path.sha256`` atomically; return ``path``."""
        path = Path(path)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, images=self.images.numpy(), delta=self.delta.half().numpy(),
                         labels=self.labels.numpy(), clean=self.dataset.images.numpy(),
                         indices=self.dataset.indices.numpy(),
                         header=np.array(json.dumps(self._header())))
            digest = sha256_file(tmp)
        with atomic_path(_sidecar(path)) as tmp:
            tmp.write_text(f"{digest}  {path.name}\n")
        return path

    def _header(self) -> dict:
        ds = self.dataset
        return {"format_version": FORMAT_VERSION, "metadata": self.metadata,
                "dataset": {"name": ds.name, "split": ds.split, "source": ds.source, "classes": list(ds.classes),
                            "fingerprint": ds.fingerprint(), "shape": list(ds.images.shape)}}

    @classmethod
    def load(cls, path: str | os.PathLike, expect: ImageDataset | None = None) -> "Poison":
        """Read a saved poison after checking its hash; with ``expect``, refuse another dataset."""
        path = Path(path)
        sidecar = _sidecar(path)
        if not path.is_file() or not sidecar.is_file():
            raise ArtifactError(f"{path} or its hash file {sidecar.name} is missing")
        expected_hash = sidecar.read_text().split()[0]
        actual_hash = sha256_file(path)
        if actual_hash != expected_hash:
            raise ArtifactError(f"{path} is corrupted: sha256 {actual_hash[:12]}… does not match "
                                f"{sidecar.name} ({expected_hash[:12]}…)")
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        header = json.loads(str(arrays["header"]))
        if header.get("format_version") != FORMAT_VERSION:
            raise ArtifactError(f"{path} has format version {header.get('format_version')}, this uexlib reads "
                                f"{FORMAT_VERSION}")
        info = header["dataset"]
        dataset = ImageDataset(images=torch.from_numpy(arrays["clean"]), labels=torch.from_numpy(arrays["labels"]),
                               classes=tuple(info["classes"]), name=info["name"], split=info["split"],
                               source=info["source"], indices=torch.from_numpy(arrays["indices"]))
        if list(dataset.images.shape) != info["shape"] or dataset.fingerprint() != info["fingerprint"]:
            raise ArtifactError(f"{path}: stored clean data do not match the recorded shape/fingerprint")
        if expect is not None:
            if tuple(expect.images.shape) != tuple(dataset.images.shape):
                raise ArtifactError(f"{path} holds a poison of shape {tuple(dataset.images.shape)}, "
                                    f"expected {tuple(expect.images.shape)}")
            if expect.fingerprint() != info["fingerprint"]:
                raise ArtifactError(f"{path} was made from dataset {info['name']}/{info['split']} "
                                    f"(fingerprint {info['fingerprint']}), not the expected "
                                    f"{expect.name}/{expect.split} (fingerprint {expect.fingerprint()})")
        return cls(images=torch.from_numpy(arrays["images"]), delta=torch.from_numpy(arrays["delta"]).float(),
                   labels=dataset.labels, dataset=dataset, metadata=header["metadata"])

    def publish(self, folder: str | os.PathLike) -> Path:
        """Write the poisoned images as PNG files ``folder/<class>/<index>.png`` a user could upload.

        The folder appears whole or not at all (built in a temporary folder, then renamed).
        """
        folder = Path(folder)
        if folder.exists():
            raise FileExistsError(f"folder {folder} already exists; choose a new one")
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            pixels = self.images.permute(0, 2, 3, 1).numpy()
            for image, label, index in zip(pixels, self.labels.tolist(), self.dataset.indices.tolist()):
                target = staging / self.dataset.classes[label]
                target.mkdir(exist_ok=True)
                Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(target / f"{index:06d}.png")
            (staging / "poison.json").write_text(json.dumps(self._header(), indent=2))
            os.replace(staging, folder)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        return folder


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def quantize(clean: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Publishable uint8 images: ``round(255 * clip(clean/255 + delta, 0, 1))``."""
    return (clean.float() / 255 + delta).clamp_(0, 1).mul_(255).round_().to(torch.uint8)
