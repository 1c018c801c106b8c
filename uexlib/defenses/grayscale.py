"""Grayscale purification (Berns 2021, thesis Sec. 3.4.2, eq. 3.1; Liu et al. 2023, ISS).

Every image becomes its BT.601 luma ``Y = round(0.299 R + 0.587 G + 0.114 B)``, written to all
three channels so the model is unchanged. The thesis finds error-minimizing noise "highly
dependent on color": grayscale alone recovers most of the accuracy on sample-wise EM (Table 3.5).
"""
from __future__ import annotations

from ..color import to_grayscale
from ..data import ImageDataset
from . import PURIFIERS
from .base import Purifier, map_images


@PURIFIERS.register("grayscale", "BT.601 grayscale on all channels (thesis Sec. 3.4.2, eq. 3.1)")
class Grayscale(Purifier):
    """Replace every image by its luma (thesis eq. 3.1), kept as three equal channels.

    Example:
        >>> gray = ue.defenses.create_purifier("grayscale").apply(poison)
    """

    def __init__(self):
        self.params = {}

    def purify(self, dataset: ImageDataset) -> ImageDataset:
        return dataset.with_images(map_images(dataset.images, to_grayscale))
