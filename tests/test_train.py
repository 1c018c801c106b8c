import pytest
import torch

import uexlib as ue
from uexlib.train import lr_multiplier

COLUMNS = ["epoch", "step", "lr", "train_loss", "train_acc", "test_acc", "test_loss"]


@pytest.fixture(scope="module")
def small_cifar(data_root):
    return (ue.load_dataset("cifar10", "train", data_root, per_class=20),
            ue.load_dataset("cifar10", "test", data_root, per_class=10))


def _model(seed=0):
    torch.manual_seed(seed)
    return ue.models.create("cnn", 10, 3, width=0.25)


def test_resume_gives_the_uninterrupted_history(small_cifar, tmp_path):
    train_set, test_set = small_cifar
    kwargs = dict(epochs=3, batch_size=32, lr=0.05, schedule="cosine", seed=3, progress=False)
    full = ue.train(_model(), train_set, test_set, **kwargs)

    def crash_in_epoch_2(x, y, ctx):
        if ctx.epoch == 2:
            raise KeyboardInterrupt
        return x, y

    checkpoint = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        ue.train(_model(), train_set, test_set, checkpoint=checkpoint, hook=crash_in_epoch_2, **kwargs)
    resumed = ue.train(_model(seed=99), train_set, test_set, checkpoint=checkpoint, **kwargs)
    assert len(resumed.history) == 3
    assert resumed.history[COLUMNS].equals(full.history[COLUMNS])
    with pytest.raises(ValueError, match="other arguments"):
        ue.train(_model(), train_set, test_set, checkpoint=checkpoint, **{**kwargs, "lr": 0.01})


def test_hook_sees_every_batch_and_can_change_it(small_cifar):
    train_set, _ = small_cifar
    steps = []

    def blank(x, y, ctx):
        steps.append(ctx.step)
        return torch.zeros_like(x), y

    result = ue.train(_model(), train_set, iterations=5, batch_size=50, schedule="constant", lr=0.01,
                      augment="none", hook=blank, progress=False)
    assert steps == [0, 1, 2, 3, 4] and result.history.step.iloc[-1] == 5
    # Blank images carry no information: training accuracy stays at chance for one class in ten.
    assert result.history.train_acc.iloc[-1] <= 20


def test_select_best_returns_the_best_validation_epoch(small_cifar):
    train_set, test_set = small_cifar
    result = ue.train(_model(), train_set, test_set, epochs=3, batch_size=32, val_set=test_set,
                      select_best=True, progress=False)
    assert result.best_epoch == int(result.history.val_acc.idxmax())
    assert ue.evaluate(result.model, test_set)["acc"] == pytest.approx(result.history.val_acc.max())


def test_schedules():
    assert lr_multiplier("multistep", 15_999, 40_000, 391, 103, (16_000, 32_000), 0.1) == 1.0
    assert lr_multiplier("multistep", 16_000, 40_000, 391, 103, (16_000, 32_000), 0.1) == pytest.approx(0.1)
    assert lr_multiplier("multistep", 39_999, 40_000, 391, 103, (16_000, 32_000), 0.1) == pytest.approx(0.01)
    assert lr_multiplier("cosine", 0, 1000, 10, 100, (), 0.1) == 1.0
    assert lr_multiplier("cosine", 509, 1000, 10, 100, (), 0.1) == pytest.approx(0.5)
    onecycle = [lr_multiplier("onecycle", s, 100, 10, 10, (), 0.1) for s in range(100)]
    assert max(onecycle) == 1.0 and onecycle.index(1.0) == 24 and onecycle[-1] < 0.02


@pytest.mark.parametrize("kwargs, match", [
    (dict(epochs=1, iterations=10), "exactly one"),
    (dict(epochs=0), "epochs"),
    (dict(epochs=1, batch_size=0), "batch_size"),
    (dict(epochs=1, lr=-0.1), "lr"),
    (dict(epochs=1, schedule="step"), "schedule"),
    (dict(epochs=1, augment="cutmix"), "augment"),
    (dict(epochs=1, select_best=True), "val_set"),
])
def test_bad_arguments_fail_before_training(tiny_set, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ue.train(_model(), tiny_set, **{"batch_size": 8, **kwargs})
