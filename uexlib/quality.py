"""Image quality of a purified set against the clean images it came from."""
from __future__ import annotations

import torch


def psnr(images: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean over images of the peak signal-to-noise ratio (dB, peak 255) of uint8 ``images`` against
    ``reference`` of the same shape; identical images count as 100 dB."""
    if images.shape != reference.shape:
        raise ValueError(f"images and reference must have the same shape, got {tuple(images.shape)} "
                         f"and {tuple(reference.shape)}")
    mse = (images.double() - reference.double()).square().flatten(1).mean(1)
    per_image = 10 * torch.log10(255.0 ** 2 / mse.clamp_min(1e-10))
    return float(per_image.clamp(max=100.0).mean())
