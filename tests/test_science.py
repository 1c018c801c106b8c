"""Science on real data: EM must make CIFAR-10 (JPEG copy) unlearnable at small scale."""
import pytest
import torch

import uexlib as ue

PER_CLASS = 200
BUDGET = dict(epochs=6, batch_size=64, lr=0.05, schedule="onecycle", progress=False)


@pytest.fixture(scope="module")
def cifar(data_root):
    return (ue.load_dataset("cifar10", "train", data_root, per_class=PER_CLASS),
            ue.load_dataset("cifar10", "test", data_root, per_class=100))


def _test_acc(train_set, test_set) -> float:
    torch.manual_seed(0)
    model = ue.models.create("cnn", 10, 3, width=0.5)
    return ue.train(model, train_set, test_set, **BUDGET).test_acc


@pytest.fixture(scope="module")
def clean_acc(cifar):
    return _test_acc(*cifar)


@pytest.mark.science
@pytest.mark.parametrize("mode", ["samplewise", "classwise"])
def test_em_poison_scores_far_below_clean(cifar, clean_acc, mode):
    train_set, test_set = cifar
    generator = ue.generators.create("em", mode=mode, eps=8 / 255, steps=10, max_rounds=10,
                                     surrogate="cnn", surrogate_width=0.25, progress=False)
    poison = generator.generate(train_set)
    poisoned_acc = _test_acc(poison.as_dataset(), test_set)
    print(f"{mode}: clean {clean_acc:.1f} %, EM {poisoned_acc:.1f} %, "
          f"{poison.metadata['rounds']} rounds, {poison.metadata['wall_s']:.0f} s")
    assert clean_acc >= 35, "the clean baseline must learn for the comparison to mean anything"
    assert poisoned_acc <= clean_acc - 30
