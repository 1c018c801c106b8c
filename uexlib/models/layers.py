"""Building blocks shared by every model family."""

import torch
from torch import nn

MIN_CHANNELS = 8


class Normalize(nn.Module):
    """Fixed per-channel affine map ``(x - 0.5) / 0.25`` for inputs in [0, 1].

    Kept inside the model so that perturbations and attacks operate in pixel
    space and callers never normalize; the constants are buffers, not
    parameters, so optimizers leave them alone.
    """

    def __init__(self, in_channels: int, mean: float = 0.5, std: float = 0.25):
        super().__init__()
        self.register_buffer("mean", torch.full((1, in_channels, 1, 1), mean))
        self.register_buffer("std", torch.full((1, in_channels, 1, 1), std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def scale_channels(channels: int, width: float, minimum: int = MIN_CHANNELS) -> int:
    """Channel count ``channels * width`` rounded, floored at ``minimum``."""
    return max(minimum, int(round(channels * width)))
