"""A store of generated poisons: each poison is made once and reused by every notebook that asks for it.

    store = PoisonStore()                        # $UEX_STORE, else ~/.cache/uexlib/poisons
    poison = store.get("em", generator, train_set)

The key is a sha256 over everything that decides the poison: the generator's registry name and
every one of its resolved parameters (``generator.params``, seed included), the fingerprint of the
clean set (rows, labels and pixels), the device kind it runs on, and the sha256 of the uexlib code
(:func:`uexlib.book.code_sha256`), so a change to any module makes new poisons rather than reuse
old ones. Thread counts are not in the key: on CPU the same key may come from runs with another
number of threads, whose floating-point sums differ in the last bits.

Each entry is a :class:`uexlib.Poison` file with its content-hash sidecar, written atomically: a
crash leaves either no entry or a whole one. An entry that fails its hash check is made again.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

from .artifacts import ArtifactError, Poison
from .data import ImageDataset


def default_root() -> Path:
    """``$UEX_STORE`` if set, else ``~/.cache/uexlib/poisons``."""
    return Path(os.environ.get("UEX_STORE") or Path.home() / ".cache" / "uexlib" / "poisons")


class PoisonStore:
    """Poisons on disk under ``root``, one ``<generator>-<key>.npz`` per distinct poison."""

    def __init__(self, root: str | os.PathLike | None = None):
        if root is not None and not isinstance(root, (str, os.PathLike)):
            raise ValueError(f"root must be a folder path or None, got {root!r}")
        self.root = Path(root) if root is not None else default_root()

    def key(self, name: str, generator, dataset: ImageDataset) -> str:
        """The 20-hex-digit key of the poison ``generator`` (registered as ``name``) would make of ``dataset``."""
        from .book import code_sha256  # the book runner's notion of "the same code"

        device = getattr(generator, "device", None)
        record = {"generator": name, "params": generator.params, "data": dataset.fingerprint(),
                  "device": None if device is None else getattr(device, "type", str(device)), "code": code_sha256()}
        return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:20]

    def path(self, name: str, generator, dataset: ImageDataset) -> Path:
        return self.root / f"{name}-{self.key(name, generator, dataset)}.npz"

    def get(self, name: str, generator, dataset: ImageDataset) -> Poison:
        """The stored poison for this generator and data, generating and storing it if there is none."""
        path = self.path(name, generator, dataset)
        if path.is_file():
            try:
                return Poison.load(path, dataset=dataset)
            except ArtifactError as error:
                warnings.warn(f"poison store: {error}; generating it again", stacklevel=2)
        poison = generator.generate(dataset)
        poison.save(path)
        return poison
