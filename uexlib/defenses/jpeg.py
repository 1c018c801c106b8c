"""JPEG purification: compress every training image once (thesis Sec. 3.4.2; ISS; D-VAE Table 2).

The thesis speaks of a "degree of compression" c in {40, 60, 80}, which is JPEG quality 100 - c;
ISS (Liu et al., ICML 2023) uses quality 10, the default here. Encoding and decoding are
Pillow's (libjpeg, 4:2:0 chroma subsampling for colour images).
"""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from ..data import ImageDataset
from ..runtime import check_int
from . import PURIFIERS
from .base import Purifier


def jpeg_images(images: torch.Tensor, quality: int) -> torch.Tensor:
    """Each uint8 image (N, C, H, W), C in {1, 3}, encoded as JPEG of ``quality`` and decoded."""
    check_int("quality", quality, low=1, high=100)
    out = np.empty(images.shape, dtype=np.uint8)
    for i, image in enumerate(images.cpu().numpy()):
        buffer = io.BytesIO()
        Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)).save(
            buffer, format="JPEG", quality=quality)
        decoded = np.asarray(Image.open(buffer))
        out[i] = decoded[None] if decoded.ndim == 2 else decoded.transpose(2, 0, 1)
    return torch.from_numpy(out).to(images.device)


@PURIFIERS.register("jpeg", "JPEG compression of every image (thesis Sec. 3.4.2; ISS JPEG-10)")
class JPEG(Purifier):
    """JPEG-compress every image at ``quality`` (1-100; the thesis' degree c is quality 100 - c).

    Example:
        >>> squeezed = ue.defenses.create_purifier("jpeg", quality=10).apply(poison)
    """

    def __init__(self, quality: int = 10):
        check_int("quality", quality, low=1, high=100)
        self.params = {"quality": quality}

    def purify(self, dataset: ImageDataset) -> ImageDataset:
        return dataset.with_images(jpeg_images(dataset.images, self.params["quality"]))
