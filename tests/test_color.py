import pytest
import torch

import uexlib as ue
from uexlib.color import color_gray, color_jitter, to_grayscale


def _batch(n=16, size=8):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_grayscale_is_the_bt601_luma_on_every_channel():
    x = torch.zeros(2, 3, 1, 1)
    x[0, 0] = 1.0  # pure red
    x[1, 1] = 1.0  # pure green
    gray = to_grayscale(x)
    assert gray[0].flatten().tolist() == pytest.approx([0.299] * 3)
    assert gray[1].flatten().tolist() == pytest.approx([0.587] * 3)
    one = torch.rand(2, 1, 4, 4)
    assert torch.equal(to_grayscale(one), one)


def test_grayscale_set_keeps_labels_and_rounds_to_uint8(tiny_set):
    gray = ue.data.grayscale_set(tiny_set)
    assert gray.images.dtype == torch.uint8 and torch.equal(gray.labels, tiny_set.labels)
    assert torch.equal(gray.images[:, 0], gray.images[:, 2])
    expected = (tiny_set.images.float() * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1).round()
    assert torch.equal(gray.images[:, 0].float(), expected)


def test_color_jitter_changes_each_image_differently_and_stays_in_range():
    x = _batch()
    out = color_jitter(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    ratios = (out.mean(dim=(1, 2, 3)) / x.mean(dim=(1, 2, 3)))
    assert ratios.std() > 0.01  # per-sample factors, not one for the batch
    assert torch.equal(out, color_jitter(x, torch.Generator().manual_seed(1)))


def test_color_gray_probabilities_and_gradient():
    x = _batch(400).requires_grad_(True)
    out = color_gray(x, torch.Generator().manual_seed(0))
    gray = (out[:, 0] == out[:, 1]).flatten(1).all(1) & (out[:, 1] == out[:, 2]).flatten(1).all(1)
    assert 0.12 < gray.float().mean() < 0.28         # grayscale with probability 0.2
    unchanged = (out == x).flatten(1).all(1)
    assert 0.1 < unchanged.float().mean() < 0.3      # neither jitter (p 0.8) nor gray: 0.2 * 0.8
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_augment_dispatches_the_cg_kind():
    x = _batch()
    out = ue.data.augment(x, "crop_flip_color_gray", torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.equal(out, x)
