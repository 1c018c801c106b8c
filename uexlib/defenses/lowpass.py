"""Low-pass filtering of every training image (REM App. D, Table 10; SEM Table 4).

``filter`` is ``"mean"``, ``"median"`` or ``"gaussian"`` over a ``kernel`` x ``kernel`` window
(the papers: 3x3), borders reflected; kornia's filters, batched on the images' device. The same
:func:`lowpass` is the training-time ``median-blur`` and ``gaussian-filter`` defenses
(:mod:`uexlib.defenses.blur`).
"""
from __future__ import annotations

import kornia.filters
import torch

from ..data import ImageDataset
from ..runtime import check_choice, check_float, check_int
from . import PURIFIERS
from .base import Purifier, map_images

FILTERS = ("mean", "median", "gaussian")


def check_lowpass(filter: str, kernel: int, sigma: float) -> None:
    check_choice("filter", filter, FILTERS)
    check_int("kernel", kernel, low=3)
    if kernel % 2 == 0:
        raise ValueError(f"kernel must be odd (3, 5, ...), got {kernel}")
    check_float("sigma", sigma, 0.0, 100.0, low_open=True)


def lowpass(x: torch.Tensor, filter: str, kernel: int = 3, sigma: float = 1.0) -> torch.Tensor:
    """Float images (N, C, H, W) filtered by the ``filter`` low-pass of ``kernel`` x ``kernel``."""
    check_lowpass(filter, kernel, sigma)
    if filter == "mean":
        return kornia.filters.box_blur(x, kernel, border_type="reflect")
    if filter == "median":
        return kornia.filters.median_blur(x, kernel)
    return kornia.filters.gaussian_blur2d(x, kernel, (sigma, sigma), border_type="reflect")


@PURIFIERS.register("lowpass", "mean / median / Gaussian low-pass filter (REM App. D, SEM Table 4)")
class LowPass(Purifier):
    """Filter every image once with a ``filter`` low-pass of ``kernel`` x ``kernel`` (REM App. D: 3x3).

    Args:
        filter: ``"mean"``, ``"median"`` or ``"gaussian"``.
        kernel: odd window size (3).
        sigma: standard deviation of the Gaussian in pixels (1.0; used by ``"gaussian"`` only;
            REM App. D does not print it).

    Example:
        >>> smooth = ue.defenses.create_purifier("lowpass", filter="median").apply(poison)
    """

    def __init__(self, filter: str = "mean", kernel: int = 3, sigma: float = 1.0):
        check_lowpass(filter, kernel, sigma)
        self.params = {"filter": filter, "kernel": kernel, "sigma": sigma}

    def purify(self, dataset: ImageDataset) -> ImageDataset:
        p = self.params
        return dataset.with_images(map_images(dataset.images, lambda x: lowpass(x, p["filter"], p["kernel"],
                                                                                p["sigma"])))
