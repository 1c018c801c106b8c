"""The two measures of a noise's class structure (Yu et al. 2022, Sec. 3), on constructed and real noise."""
import pytest
import torch

import uexlib as ue
from uexlib import separability


def _random(n=2000, shape=(3, 8, 8), classes=10, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=gen) - 0.5, torch.randint(0, classes, (n,), generator=gen)


def test_class_wise_noise_is_all_class_and_perfectly_separable():
    noise, labels = _random()
    patterns = noise[:10]
    assert separability.class_mean_share(patterns[labels], labels, 10) == pytest.approx(1.0)
    assert separability.linear_probe_accuracy(patterns[labels], labels, 10) == 100.0


def test_noise_unrelated_to_the_class_has_no_share_and_chance_accuracy():
    noise, labels = _random()
    assert separability.class_mean_share(noise, labels, 10) < 0.01
    assert separability.linear_probe_accuracy(noise, labels, 10) < 20.0


def test_sample_specific_noise_can_be_separable_with_a_small_share():
    """Each image's noise is its own (unit variance per pixel, 192 pixels) plus 4 on one pixel of its
    class: the class means explain a few percent of the variance, yet the class can be read off."""
    noise, labels = _random()
    built = noise.flatten(1) * 12 ** 0.5                                   # uniform with unit variance
    built[torch.arange(len(labels)), labels * 19] += 4.0
    assert separability.class_mean_share(built.view_as(noise), labels, 10) < 0.1
    assert separability.linear_probe_accuracy(built.view_as(noise), labels, 10) > 70.0       # chance: 10


def test_a_real_shortcut_poison_is_separable_and_shuffling_its_noise_breaks_that(small_cifar):
    train_set, _ = small_cifar
    poison = ue.generators.create("lsp").generate(train_set)
    delta, labels = poison.per_sample_delta(), poison.labels
    assert separability.class_mean_share(delta, labels, 10) > 0.5
    assert separability.linear_probe_accuracy(delta, labels, 10) >= 90.0
    shuffled = delta[torch.randperm(len(delta), generator=torch.Generator().manual_seed(0))]
    assert separability.linear_probe_accuracy(shuffled, labels, 10) < 40.0


@pytest.mark.parametrize("call, match", [
    (lambda d, y: separability.class_mean_share(d[:5], y, 10), "delta must be"),
    (lambda d, y: separability.class_mean_share(d, y, 4), "labels must lie in"),
    (lambda d, y: separability.class_mean_share(torch.zeros_like(d), y, 10), "no variance"),
    (lambda d, y: separability.linear_probe_accuracy(d, y, 10, held_out=0.0), "held_out"),
    (lambda d, y: separability.linear_probe_accuracy(d, y, 10, held_out=1.0), "leaves no rows"),
    (lambda d, y: separability.linear_probe_accuracy(d, y, 10, steps=0), "steps"),
])
def test_bad_arguments_fail_in_one_line(call, match):
    noise, labels = _random(n=50)
    with pytest.raises(ValueError, match=match):
        call(noise, labels)
