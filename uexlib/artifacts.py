"""The poison artifact: one type for every generator, saved lean and atomically with a content hash.

File format (version 2), one ``.npz`` written with ``np.savez_compressed``:

* ``diff``: poisoned minus clean uint8 images, int8 when every value fits in [-128, 127], else int16;
* ``indices``, ``labels``: int64 (N,), the clean set's rows of its full split and its labels;
* ``class_delta``: float32 (K, C, H, W), only for class-wise noise;
* ``header``: JSON with ``format_version``, ``classwise``, ``diff_dtype``, the metadata and the
  clean set's name, split, source, classes, fingerprint and shape.

Clean images are not stored: :meth:`Poison.load` takes the clean set or rebuilds it by name. Beside
the file, ``<file>.sha256`` holds ``<content hash>  <file name>``; the content hash covers the
arrays and the metadata without volatile keys (:data:`VOLATILE_KEYS`), so a rerun with the same seed
gives the same hash although its wall time differs. It is not the file's sha256 (``sha256sum -c``
does not apply: zip entries carry their write time).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .data import ImageDataset, load_dataset
from .runtime import CODE_COMMIT, VERSION, atomic_path, check_choice, check_float

FORMAT_VERSION = 2
# Metadata keys that record how a run went, not what it made; dropped at any depth before hashing.
VOLATILE_KEYS = ("wall_s", "git_commit", "device", "timestamp", "uexlib_version")
NORMS = ("linf", "l2", "l1", "l0")
_CHUNK = 4096  # images per slice in whole-set checks, to bound temporary memory


class ArtifactError(ValueError):
    """A poison file that is corrupted, or does not match what the caller expects."""


@dataclass(frozen=True)
class Poison:
    """What a data owner publishes, plus how it was made.

    ``images``: the perturbed training images, uint8 (N, C, H, W); ``delta``: float32 on the [0, 1]
    pixel scale, either (N, C, H, W) sample-wise, where it is exactly the published perturbation
    ``(images - clean) / 255``, or (K, C, H, W) class-wise, the class noise as generated
    (``delta[labels[i]]`` belongs to image ``i``); ``labels``: int64 (N,), unchanged by an
    availability poison; ``dataset``: the clean set it was made from; ``metadata``: method, every
    parameter, norm, radius, seed, surrogate, wall time, library version and git commit (copied
    through JSON, so tuples become lists); ``classwise``: inferred as ``len(delta) != N`` when
    ``None``. Generators build one with :meth:`from_perturbation`.
    """

    images: torch.Tensor
    delta: torch.Tensor
    labels: torch.Tensor
    dataset: ImageDataset
    metadata: dict = field(default_factory=dict)
    classwise: bool | None = None

    def __post_init__(self):
        clean = self.dataset.images
        if self.images.shape != clean.shape or self.images.dtype != torch.uint8 or self.images.device != clean.device:
            raise ArtifactError(f"images must be uint8 of shape {tuple(clean.shape)} on {clean.device}, "
                                f"got {self.images.dtype} {tuple(self.images.shape)} on {self.images.device}")
        if not torch.equal(self.labels, self.dataset.labels):
            raise ArtifactError("labels differ from the clean dataset's: an availability poison keeps labels")
        if self.delta.dtype != torch.float32 or self.delta.device.type != "cpu":
            raise ArtifactError(f"delta must be a float32 CPU tensor, got {self.delta.dtype} on {self.delta.device}")
        classwise = len(self.delta) != len(self.images) if self.classwise is None else bool(self.classwise)
        rows = self.dataset.num_classes if classwise else len(self.images)
        if tuple(self.delta.shape) != (rows, *self.images.shape[1:]):
            raise ArtifactError(f"{'class' if classwise else 'sample'}-wise delta must have shape "
                                f"{(rows, *self.images.shape[1:])}, got {tuple(self.delta.shape)}")
        if not classwise and not _agrees(self.delta, self.images, clean):
            raise ArtifactError("sample-wise delta must equal (images - clean) / 255 exactly; "
                                "build the poison with Poison.from_perturbation")
        try:
            metadata = json.loads(json.dumps(self.metadata))
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f"metadata must be JSON-serializable: {exc}") from exc
        object.__setattr__(self, "classwise", classwise)
        object.__setattr__(self, "metadata", metadata)

    @classmethod
    def from_perturbation(cls, dataset: ImageDataset, delta: torch.Tensor, metadata: dict,
                          classwise: bool | None = None) -> "Poison":
        """The poison that adds ``delta`` to ``dataset``'s images; neither input is modified.

        ``delta`` is on the [0, 1] pixel scale, on any device: (N, C, H, W) sample-wise or
        (K, C, H, W) class-wise with K = ``dataset.num_classes``. With ``classwise=None`` a delta
        with N rows is sample-wise (also when N == K) and one with K != N rows class-wise; pass
        ``classwise`` to decide. Images are ``round(255 * clip(clean/255 + delta, 0, 1))``. Metadata
        gains ``dataset`` (name, split, source, fingerprint, size), ``uexlib_version``,
        ``git_commit`` and ``device`` (delta's device) where the caller did not set them.
        """
        delta_cpu = delta.detach().to("cpu", torch.float32)
        if classwise is None:
            classwise = len(delta) != len(dataset)
        rows = dataset.num_classes if classwise else len(dataset)
        if tuple(delta.shape) != (rows, *dataset.shape):
            raise ValueError(f"{'class' if classwise else 'sample'}-wise delta must have shape "
                             f"{(rows, *dataset.shape)}, got {tuple(delta.shape)}")
        images = quantize(dataset.images, delta_cpu[dataset.labels] if classwise else delta_cpu)
        defaults = {"dataset": {"name": dataset.name, "split": dataset.split, "source": dataset.source,
                                "fingerprint": dataset.fingerprint(), "size": len(dataset)},
                    "uexlib_version": VERSION, "git_commit": CODE_COMMIT, "device": str(delta.device)}
        # Class-wise noise is kept as generated (cloned: the caller's tensor may change later);
        # sample-wise noise is replaced by what the uint8 images really carry.
        kept = delta_cpu.clone() if classwise else _published_delta(images, dataset.images)
        return cls(images=images, delta=kept, labels=dataset.labels, dataset=dataset,
                   metadata={**defaults, **metadata}, classwise=classwise)

    def as_dataset(self) -> ImageDataset:
        """The poisoned training set, ready for :func:`uexlib.train`."""
        return self.dataset.with_images(self.images, source=f"{self.dataset.source}, {self.metadata.get('method', 'poison')}")

    def per_sample_delta(self) -> torch.Tensor:
        return self.delta[self.labels] if self.classwise else self.delta

    def content_hash(self) -> str:
        """sha256 hex of what defines the poison: pixel differences, rows, labels, class noise, the
        clean set's description and the metadata without :data:`VOLATILE_KEYS`."""
        return _content_hash(self._arrays(), self._header())

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path`` (an ``.npz``) and ``path.sha256`` (the content hash), each atomically."""
        path = Path(path)
        arrays, header = self._arrays(), self._header()
        digest = _content_hash(arrays, header)
        diff = arrays["diff"]
        if diff.size == 0 or (diff.min() >= -128 and diff.max() <= 127):
            arrays["diff"] = diff.astype(np.int8)
        header["diff_dtype"] = arrays["diff"].dtype.name
        with atomic_path(path) as tmp:
            # A file handle, not a name: numpy would append ".npz" to the temporary name.
            with open(tmp, "wb") as handle:
                np.savez_compressed(handle, header=np.array(json.dumps(header)), **arrays)
        with atomic_path(_sidecar(path)) as tmp:
            tmp.write_text(f"{digest}  {path.name}\n")
        return path

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {"diff": _diff(self.images, self.dataset.images),
                  "indices": self.dataset.indices.numpy().astype(np.int64),
                  "labels": self.labels.numpy().astype(np.int64)}
        if self.classwise:
            arrays["class_delta"] = self.delta.numpy()
        return arrays

    def _header(self) -> dict:
        ds = self.dataset
        return {"format_version": FORMAT_VERSION, "classwise": self.classwise, "metadata": self.metadata,
                "dataset": {"name": ds.name, "split": ds.split, "source": ds.source, "classes": list(ds.classes),
                            "fingerprint": ds.fingerprint(), "shape": list(ds.images.shape)}}

    @classmethod
    def load(cls, path: str | os.PathLike, dataset: ImageDataset | None = None,
             root: str | os.PathLike | None = None) -> "Poison":
        """Read a saved poison after checking its content hash.

        ``dataset``: the clean set it was made from; another set is refused. ``None``: rebuild it
        with ``load_dataset(name, split, root, download=False)`` and the recorded rows.
        """
        path = Path(path)
        sidecar = _sidecar(path)
        if not path.is_file() or not sidecar.is_file():
            raise ArtifactError(f"{path} or its hash file {sidecar.name} is missing")
        expected = sidecar.read_text(errors="replace").split()[:1]
        if len(expected) != 1 or len(expected[0]) != 64:
            raise ArtifactError(f"{path}: hash file {sidecar.name} is corrupted (no sha256 in it)")
        arrays, header = _read(path)
        actual = _content_hash(arrays, header)
        if actual != expected[0]:
            raise ArtifactError(f"{path} is corrupted: content sha256 {actual[:12]}… does not match "
                                f"{sidecar.name} ({expected[0][:12]}…)")
        info = header["dataset"]
        clean = _clean_set(path, info, arrays["indices"], dataset, root)
        if not (np.array_equal(arrays["labels"], clean.labels.numpy())
                and np.array_equal(arrays["indices"], clean.indices.numpy())):
            raise ArtifactError(f"{path} is corrupted: its labels or rows disagree with its recorded dataset")
        images = torch.from_numpy(_apply_diff(path, clean.images.numpy(), arrays["diff"]))
        if header["classwise"]:
            delta = torch.from_numpy(arrays["class_delta"])
        else:
            delta = _published_delta(images, clean.images)
        return cls(images=images, delta=delta, labels=clean.labels, dataset=clean, metadata=header["metadata"],
                   classwise=header["classwise"])

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


def check_budget(delta: torch.Tensor, norm: str, eps: float) -> None:
    """Raise a ValueError unless every sample's perturbation has ``norm`` at most ``eps``.

    ``delta``: (N, ...) on the [0, 1] pixel scale, any device; ``norm``: ``linf``, ``l2``,
    ``l1``, or ``l0`` (pixels, i.e. positions (H, W) where any channel changes, of (N, C, H, W)).
    Norms are taken per sample in float64, with a tolerance of ``1e-6 * max(1, eps)``.
    """
    check_choice("norm", norm, NORMS)
    check_float("eps", eps, 0.0, float("inf"), low_open=True)
    if delta.numel() == 0:
        return
    if norm == "l0":
        pixels = (delta.detach() != 0).any(dim=1).flatten(1).sum(1)
        if pixels.max().item() > eps:
            raise ValueError(f"perturbation exceeds the l0 budget eps={eps:g}: worst sample changes "
                             f"{pixels.max().item()} pixels")
        return
    order = {"linf": float("inf"), "l2": 2.0, "l1": 1.0}[norm]
    flat = delta.detach().reshape(len(delta), -1)
    worst = torch.zeros((), dtype=torch.float64, device=delta.device)
    for start in range(0, len(flat), _CHUNK):
        norms = torch.linalg.vector_norm(flat[start:start + _CHUNK].double(), ord=order, dim=1)
        # NaN compares false with everything; count it as an infinite norm so it is refused.
        worst = torch.maximum(worst, torch.where(norms.isnan(), torch.inf, norms).max())
    worst = worst.item()
    if worst > eps + 1e-6 * max(1.0, eps):
        raise ValueError(f"perturbation exceeds the {norm} budget eps={eps:.6g}: worst sample has "
                         f"{norm} norm {worst:.6g}")


def shrink_to_budget(clean: torch.Tensor, delta: torch.Tensor, norm: str, eps: float,
                     tries: int = 20) -> torch.Tensor:
    """``delta`` scaled down per sample until its published (8-bit rounded) form is within budget.

    Rounding to 8-bit images adds up to half a level per pixel, which can push a norm that was
    exactly ``eps`` past it; each try shrinks the offending samples by the excess.
    """
    order = {"linf": float("inf"), "l2": 2.0, "l1": 1.0}[norm]
    delta = delta.detach().to("cpu", torch.float32).clone()
    for _ in range(tries):
        published = _published_delta(quantize(clean, delta), clean)
        norms = torch.linalg.vector_norm(published.flatten(1).double(), ord=order, dim=1)
        over = norms > eps + 1e-6 * max(1.0, eps)       # check_budget's tolerance
        if not over.any():
            return delta
        delta[over] *= (eps / norms[over] * (1 - 1e-3)).float().view(-1, *[1] * (delta.ndim - 1))
    raise ValueError(f"could not fit the published perturbation into the {norm} budget {eps:g}")


def scale_to_budget(clean: torch.Tensor, noise: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """Every sample of ``noise`` scaled to ``norm`` exactly ``eps`` (in float64, then float32), shrunk
    where 8-bit rounding would push it past (:func:`shrink_to_budget`), and checked."""
    order = {"linf": float("inf"), "l2": 2.0, "l1": 1.0}[norm]
    noise = noise.double()
    norms = torch.linalg.vector_norm(noise.flatten(1), ord=order, dim=1).clamp_min(1e-12)
    delta = shrink_to_budget(clean, (eps * noise / norms.view(-1, *[1] * (noise.ndim - 1))).float(), norm, eps)
    check_budget(delta, norm, eps)
    return delta


def quantize(clean: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Publishable uint8 images: ``round(255 * clip(clean/255 + delta, 0, 1))``."""
    return (clean.float() / 255 + delta).clamp_(0, 1).mul_(255).round_().to(torch.uint8)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _diff(images: torch.Tensor, clean: torch.Tensor) -> np.ndarray:
    return images.numpy().astype(np.int16) - clean.numpy().astype(np.int16)


def _published_delta(images: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """``(images - clean) / 255`` as float32, the one formula every sample-wise delta comes from."""
    return (images.to(torch.int16) - clean.to(torch.int16)).float() / 255


def _agrees(delta: torch.Tensor, images: torch.Tensor, clean: torch.Tensor) -> bool:
    return all(torch.equal(delta[s:s + _CHUNK], _published_delta(images[s:s + _CHUNK], clean[s:s + _CHUNK]))
               for s in range(0, len(images), _CHUNK))


def _apply_diff(path: Path, clean: np.ndarray, diff: np.ndarray) -> np.ndarray:
    poisoned = clean.astype(np.int16) + diff
    if poisoned.size and (poisoned.min() < 0 or poisoned.max() > 255):
        raise ArtifactError(f"{path} is corrupted: clean images plus stored differences leave [0, 255]")
    return poisoned.astype(np.uint8)


def _strip_volatile(value):
    if isinstance(value, dict):
        return {k: _strip_volatile(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [_strip_volatile(v) for v in value]
    return value


def _content_hash(arrays: dict[str, np.ndarray], header: dict) -> str:
    """sha256 over the arrays (``diff`` as int16, whatever it is stored as) and the header's
    classwise flag, dataset description and metadata less :data:`VOLATILE_KEYS`."""
    described = {"classwise": header["classwise"], "dataset": header["dataset"],
                 "metadata": _strip_volatile(header["metadata"])}
    digest = hashlib.sha256(json.dumps(described, sort_keys=True, separators=(",", ":")).encode())
    canonical = {"diff": "<i2", "indices": "<i8", "labels": "<i8", "class_delta": "<f4"}
    for name, dtype in canonical.items():
        if name in arrays:
            array = np.ascontiguousarray(arrays[name], dtype=dtype)
            digest.update(f"{name}:{dtype}:{array.shape};".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


def _read(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """Arrays and header of a version-2 file; any damage surfaces as an ArtifactError."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        header = json.loads(str(arrays.pop("header")))
        version = header["format_version"]
    except Exception as exc:  # zip, zlib, JSON and numpy each raise their own types on damage
        raise ArtifactError(f"{path} is corrupted: cannot read it ({type(exc).__name__}: {exc})") from exc
    if version != FORMAT_VERSION:
        raise ArtifactError(f"{path} has format version {version}, this uexlib reads version {FORMAT_VERSION} "
                            "only; regenerate the poison")
    try:
        _check_layout(header, arrays)
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{path} is corrupted: {exc}") from exc
    return arrays, header


def _check_layout(header: dict, arrays: dict[str, np.ndarray]) -> None:
    info = header["dataset"]
    missing = {"name", "split", "source", "classes", "fingerprint", "shape"} - set(info)
    if missing:
        raise ValueError(f"the dataset description lacks {sorted(missing)}")
    shape = tuple(int(s) for s in info["shape"])
    if len(shape) != 4:
        raise ValueError(f"the recorded shape {shape} is not (N, C, H, W)")
    count, num_classes = shape[0], len(info["classes"])
    expected = {"diff": (header["diff_dtype"], shape), "indices": ("int64", (count,)),
                "labels": ("int64", (count,))}
    if header["classwise"] is True:
        expected["class_delta"] = ("float32", (num_classes, *shape[1:]))
    elif header["classwise"] is not False:
        raise ValueError(f"classwise is {header['classwise']!r}, not a boolean")
    if set(arrays) != set(expected) or header["diff_dtype"] not in ("int8", "int16"):
        raise ValueError(f"it holds arrays {sorted(arrays)} (diff {header['diff_dtype']}), "
                         f"expected {sorted(expected)} (diff int8 or int16)")
    for name, (dtype, dims) in expected.items():
        if arrays[name].dtype.name != dtype or arrays[name].shape != dims:
            raise ValueError(f"array {name} is {arrays[name].dtype} {arrays[name].shape}, expected {dtype} {dims}")
    if not isinstance(header["metadata"], dict):
        raise ValueError("metadata is not a JSON object")
    if arrays["labels"].size and not 0 <= arrays["labels"].min() <= arrays["labels"].max() < num_classes:
        raise ValueError(f"labels leave [0, {num_classes})")


def _clean_set(path: Path, info: dict, indices: np.ndarray, dataset: ImageDataset | None,
               root: str | os.PathLike | None) -> ImageDataset:
    """The clean set the poison was made from: ``dataset`` after checks, else rebuilt by name."""
    recorded = f"{info['name']}/{info['split']} (fingerprint {info['fingerprint']})"
    if dataset is None:
        try:
            full = load_dataset(info["name"], info["split"], root, download=False)
        except Exception as exc:  # a missing folder, file or download surfaces as many types
            raise ArtifactError(f"{path}: cannot rebuild its clean dataset {recorded} from root {root!r} "
                                f"({type(exc).__name__}: {exc}); load it yourself and pass dataset=") from exc
        rows = torch.from_numpy(indices)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(full)):
            raise ArtifactError(f"{path} was made from {recorded}, which has rows up to {int(rows.max())}; "
                                f"the dataset found has only {len(full)}")
        dataset = full.take(rows)
        if dataset.fingerprint() != info["fingerprint"]:
            raise ArtifactError(f"{path} was made from {recorded}, but the dataset found under root {root!r} "
                                f"differs (fingerprint {dataset.fingerprint()})")
        return dataset
    if list(dataset.images.shape) != list(info["shape"]):
        raise ArtifactError(f"{path} holds a poison of shape {tuple(info['shape'])}, "
                            f"expected {tuple(dataset.images.shape)}")
    if dataset.fingerprint() != info["fingerprint"]:
        raise ArtifactError(f"{path} was made from dataset {recorded}, not the expected "
                            f"{dataset.name}/{dataset.split} (fingerprint {dataset.fingerprint()})")
    return dataset
