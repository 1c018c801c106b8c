"""SEP: the ensemble of checkpoints and the targeted move it makes."""
import pytest
import torch
import torch.nn.functional as F

import uexlib as ue

FAST = dict(surrogate="cnn", surrogate_width=0.25, batch_size=50, train_iterations=60, checkpoints=3, steps=8,
            progress=False, device="cpu")


def test_checkpoints_are_taken_along_one_run_and_the_noise_moves_their_loss_towards_the_target(data_root):
    cifar = ue.load_dataset("cifar10", "train", data_root, per_class=30)
    gen = ue.generators.create("sep", **FAST)
    members = gen._checkpoints(cifar)
    assert len(members) == 3
    first, last = (torch.cat([p.flatten() for p in m.parameters()]) for m in (members[0], members[-1]))
    assert not torch.equal(first, last)                                     # different stages of training
    poison = gen.generate(cifar)
    assert poison.delta.abs().max() <= 8 / 255 + 1e-6
    target = (cifar.labels + 5) % 10

    def target_loss(images):
        with torch.no_grad():
            return sum(F.cross_entropy(m(images.float() / 255), target) for m in members) / len(members)

    assert target_loss(poison.images) < target_loss(cifar.images) - 0.3
    assert ue.generators.create("sep", **FAST).generate(cifar).content_hash() == poison.content_hash()


@pytest.mark.parametrize("params, match", [({"checkpoints": 0}, "checkpoints"), ({"step_size": 1.0}, "step_size"),
                                           ({"train_iterations": 2, "checkpoints": 5}, "train_iterations")])
def test_bad_arguments_are_named(params, match):
    with pytest.raises(ValueError, match=match):
        ue.generators.create("sep", **params)
