"""Image shortcut squeezing, ISS (Liu, Zhao and Larson, ICML 2023).

One simple compression applied to every training image before ordinary training: grayscale
(ISS-G, against color-dominated shortcuts), JPEG at quality 10 (ISS-J, against L-inf noise such
as EM, REM and TAP) or 2-bit depth reduction (ISS-B, against L0 noise). The paper picks the
squeeze by the poison's norm; ``squeeze`` is that choice.
"""
from __future__ import annotations

from ..color import to_grayscale
from ..data import ImageDataset
from ..runtime import check_choice, check_int
from . import PURIFIERS
from .base import Purifier, map_images
from .bdr import reduce_bit_depth
from .jpeg import jpeg_images

SQUEEZES = ("grayscale", "jpeg", "bdr")


@PURIFIERS.register("iss", "image shortcut squeezing: grayscale, JPEG-10 or 2-bit depth (Liu et al. 2023)")
class ImageShortcutSqueezing(Purifier):
    """ISS: squeeze every image by ``squeeze`` (``"grayscale"``, ``"jpeg"`` or ``"bdr"``).

    Args:
        squeeze: which compression (default ``"jpeg"``, ISS-J).
        quality: JPEG quality of ISS-J (10).
        bits: bit depth of ISS-B (2).

    Example:
        >>> squeezed = ue.defenses.create_purifier("iss", squeeze="grayscale").apply(poison)
    """

    def __init__(self, squeeze: str = "jpeg", quality: int = 10, bits: int = 2):
        check_choice("squeeze", squeeze, SQUEEZES)
        check_int("quality", quality, low=1, high=100)
        check_int("bits", bits, low=1, high=8)
        self.params = {"squeeze": squeeze, "quality": quality, "bits": bits}

    def purify(self, dataset: ImageDataset) -> ImageDataset:
        p = self.params
        if p["squeeze"] == "jpeg":
            return dataset.with_images(jpeg_images(dataset.images, p["quality"]))
        fn = to_grayscale if p["squeeze"] == "grayscale" else (lambda x: reduce_bit_depth(x, p["bits"]))
        return dataset.with_images(map_images(dataset.images, fn))
