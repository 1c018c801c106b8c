import pytest
import torch
import torch.nn.functional as F

import uexlib as ue
from conftest import small_cnn
from uexlib.defenses import Defense
from uexlib.train import lr_multiplier

COLUMNS = ["epoch", "step", "lr", "train_loss", "train_acc", "test_acc", "test_loss"]


def _model(seed=0):
    return small_cnn(seed)


class Crash(Defense):
    """Raises in a given epoch while ``armed``; ``armed`` is not a parameter, so the key is unchanged."""

    def __init__(self, epoch: int = 2):
        self.params = {"epoch": epoch}
        self.armed = True

    def transform(self, x, y, ctx):
        if self.armed and ctx.epoch == self.params["epoch"]:
            raise KeyboardInterrupt
        return x, y


class CountEpochs(Defense):
    """Keeps state across epochs and reports it in the history."""

    def __init__(self):
        self.params, self.seen = {}, 0

    stop_at = None  # an epoch to interrupt after (not a parameter: the key stays the same)

    def on_epoch_end(self, trainer, epoch):
        if epoch == self.stop_at:
            raise KeyboardInterrupt
        self.seen += 1
        return {"epochs_seen": self.seen}

    def state_dict(self):
        return {"seen": self.seen}

    def load_state_dict(self, state):
        self.seen = state["seen"]


def test_resume_gives_the_uninterrupted_history(small_cifar, tmp_path):
    train_set, test_set = small_cifar
    kwargs = dict(epochs=3, batch_size=32, lr=0.05, schedule="cosine", seed=3, progress=False)
    crash = Crash()
    crash.armed = False
    full = ue.train(_model(), train_set, test_set, defense=crash, **kwargs)
    checkpoint = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        ue.train(_model(), train_set, test_set, checkpoint=checkpoint, defense=Crash(), **kwargs)
    resumed = ue.train(_model(seed=99), train_set, test_set, checkpoint=checkpoint, defense=crash, **kwargs)
    assert len(resumed.history) == 3
    assert resumed.history[COLUMNS].equals(full.history[COLUMNS])
    with pytest.raises(ValueError, match="lr differ"):
        ue.train(_model(), train_set, test_set, checkpoint=checkpoint, defense=crash, **{**kwargs, "lr": 0.01})


def test_resume_under_another_defense_is_refused(small_cifar, tmp_path):
    train_set, _ = small_cifar
    kwargs = dict(epochs=1, batch_size=32, progress=False)
    checkpoint = tmp_path / "ckpt.pt"
    ue.train(_model(), train_set, checkpoint=checkpoint, defense=Crash(epoch=5), **kwargs)
    with pytest.raises(ValueError, match="defense differ"):
        ue.train(_model(), train_set, checkpoint=checkpoint, **kwargs)
    with pytest.raises(ValueError, match="defense differ"):
        ue.train(_model(), train_set, checkpoint=checkpoint, defense=Crash(epoch=4), **kwargs)


def test_defense_state_survives_a_resume(small_cifar, tmp_path):
    train_set, _ = small_cifar
    checkpoint = tmp_path / "ckpt.pt"
    kwargs = dict(epochs=3, batch_size=32, lr=0.05, schedule="constant", progress=False, checkpoint=checkpoint)
    interrupted = CountEpochs()
    interrupted.stop_at = 1
    with pytest.raises(KeyboardInterrupt):
        ue.train(_model(), train_set, defense=interrupted, **kwargs)
    resumed = ue.train(_model(), train_set, defense=CountEpochs(), **kwargs)
    assert resumed.history.epochs_seen.tolist() == [1, 2, 3]


def test_transform_sees_every_batch_and_changes_what_is_learned(small_cifar):
    train_set, _ = small_cifar

    class LabelLeak(Defense):
        """Replaces every image by its label written into the pixels: trivially learnable."""
        params = {}

        def __init__(self):
            self.steps = []

        def transform(self, x, y, ctx):
            self.steps.append(ctx.step)
            leak = torch.zeros_like(x)
            leak[torch.arange(len(y)), 0, y, :] = 1.0
            return leak, y

    leak = LabelLeak()
    result = ue.train(_model(), train_set, iterations=60, batch_size=50, schedule="constant", lr=0.05,
                      augment="none", defense=leak, progress=False)
    assert leak.steps == list(range(60)) and result.history.step.iloc[-1] == 60
    plain = ue.train(_model(), train_set, iterations=60, batch_size=50, schedule="constant", lr=0.05,
                     augment="none", progress=False)
    # 200 real images in 60 steps stay far from memorized; the leaked label is learned at once.
    assert result.history.train_acc.iloc[-1] >= 95 > plain.history.train_acc.iloc[-1] + 20


def test_loss_replacement_decides_what_is_learned(small_cifar):
    train_set, test_set = small_cifar

    class AlwaysZero(Defense):
        params = {}

        def loss(self, x, y, ctx):
            logits = ctx.forward(x)
            return F.cross_entropy(logits.float(), torch.zeros_like(y)), logits

    result = ue.train(_model(), train_set, iterations=30, batch_size=50, schedule="constant", lr=0.05,
                      defense=AlwaysZero(), progress=False)
    with torch.no_grad():
        predictions = result.model.eval()(test_set.images.float() / 255).argmax(1)
    assert (predictions == 0).all()


def test_parameter_groups_scale_the_learning_rate_and_can_change_at_epoch_ends(small_cifar):
    train_set, _ = small_cifar

    class FreezeFirstLayer(Defense):
        """The first conv trains at lr x0; after epoch 0 every group's factor drops to 0."""
        params = {}

        def param_groups(self, model):
            first = list(model.parameters())[0]
            rest = [p for p in model.parameters() if p is not first]
            return [{"params": [first], "lr_factor": 0.0}, {"params": rest, "lr_factor": 1.0}]

        def on_epoch_end(self, trainer, epoch):
            self.snapshot = [p.detach().clone() for p in trainer.model.parameters()]
            for group in trainer.optimizer.param_groups:
                group["lr_factor"] = 0.0
            return {"factors": ",".join(str(g["lr_factor"]) for g in trainer.optimizer.param_groups)}

    model = _model()
    initial = [p.detach().clone() for p in model.parameters()]
    defense = FreezeFirstLayer()
    result = ue.train(model, train_set, epochs=2, batch_size=50, schedule="constant", lr=0.05,
                      defense=defense, progress=False)
    params = list(result.model.parameters())
    assert torch.equal(params[0].cpu(), initial[0])
    assert not torch.equal(params[1].cpu(), initial[1])
    # Epoch 1 ran with every factor at 0: no parameter moved after the first epoch.
    assert all(torch.equal(p, s) for p, s in zip(params, defense.snapshot))
    assert result.history.factors.tolist() == ["0.0,0.0", "0.0,0.0"]
    assert result.history.lr.iloc[-1] == 0.0


def test_select_best_returns_the_best_validation_epoch(small_cifar):
    train_set, test_set = small_cifar
    result = ue.train(_model(), train_set, test_set, epochs=3, batch_size=32, val_set=test_set,
                      select_best=True, progress=False)
    assert result.best_epoch == int(result.history.val_acc.idxmax())
    assert ue.evaluate(result.model, test_set)["acc"] == pytest.approx(result.history.val_acc.max())


def test_the_last_partial_batch_is_dropped(small_cifar):
    train_set, _ = small_cifar  # 200 images
    result = ue.train(_model(), train_set, epochs=2, batch_size=64, progress=False)
    assert result.history.step.tolist() == [3, 6]


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
    (dict(epochs=1, defense=lambda x, y, ctx: (x, y)), "defense must be"),
])
def test_bad_arguments_fail_before_training(tiny_set, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ue.train(_model(), tiny_set, **{"batch_size": 8, **kwargs})


@pytest.mark.gpu
def test_trainer_on_cuda_learns_a_trivial_task():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (512,), generator=gen)
    images = (labels.view(-1, 1, 1, 1).expand(512, 3, 16, 16) * 60).to(torch.uint8)
    data = ue.ImageDataset(images=images, labels=labels, classes=tuple("abcd"), name="t", split="train", source="t")
    result = ue.train(_model(), data, data, epochs=3, batch_size=128, device="cuda", progress=False)
    assert result.history.test_acc.iloc[-1] > 90
