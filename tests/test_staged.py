"""Progressive staged training (ST paper, Dang et al. 2023): ACM, eq. 7, rollbacks, phases, resume."""
import math

import pytest
import torch

import uexlib as ue
from conftest import small_cnn
from uexlib.acm import acm, activations, gradient_magnitude, penultimate_layer
from uexlib.defenses.staged import alpha, layer_units


def test_acm_matches_the_equations_by_hand():
    # class 0: (0,0), (2,0): centre (1,0), sigma 1, R 1. class 1: (10,0), (10,4): centre (10,2), sigma 2, R 2.
    # class 2: (0,10), (0,16): centre (0,13), sigma 3, R 3.
    features = torch.tensor([[0., 0.], [2., 0.], [10., 0.], [10., 4.], [0., 10.], [0., 16.]])
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    l01, l02, l12 = 8.0, 10.0, math.dist((10, 4), (0, 10))
    expected = 2 * (l01 / (1 + 4) + l02 / (1 + 9) + l12 / (4 + 9)) / (3 * 2)
    assert acm(features, labels) == pytest.approx(expected, rel=1e-12)
    # Tighter, more distant clusters (the shortcut's signature) give a larger ACM.
    assert acm(features * torch.tensor([0.5, 1.0]) + labels[:, None] * 20.0, labels) > acm(features, labels)
    with pytest.raises(ValueError, match="at least 2 classes"):
        acm(features[:2], labels[:2])


def test_activations_take_the_penultimate_layer_or_a_named_one():
    torch.manual_seed(0)
    model = ue.models.create("cnn", 10, 3, width=0.25)
    images = torch.rand(7, 3, 32, 32)
    assert penultimate_layer(model) == "fc"
    assert activations(model, images).shape == (7, model.fc.in_features)
    assert activations(model, images, layer="features.0").shape == (7, 8 * 32 * 32)
    with pytest.raises(ValueError, match="layer 'nope' is not a module"):
        activations(model, images, layer="nope")
    gmv = gradient_magnitude(model, images, torch.arange(7))
    assert gmv > 0 and all(p.grad is None for p in model.parameters())
    first = next(p for p in model.parameters() if p.ndim > 1)
    first.requires_grad_(False)                      # a transplanted, frozen first layer (ST Fig. 2)
    assert gradient_magnitude(model, images, torch.arange(7)) == pytest.approx(gmv)
    assert not first.requires_grad


def test_alpha_follows_eq_7():
    assert alpha(3, 20, 0.25, 0) == 1.0
    assert alpha(4, 20, 0.2, 1) == pytest.approx(0.5)                   # i / (beta tau) = l
    assert alpha(1, 6, 0.25, 1) == pytest.approx(1 - 1 / (1 + math.exp(-2)))
    assert alpha(2, 6, 0.25, 3) == pytest.approx(1 - 1 / (1 + math.exp(2 / 0.75 - 6)))
    for tau in (1, 2, 3):                       # shallow layers slow first, and more with every rollback
        column = [alpha(i, 20, 0.25, tau) for i in range(1, 21)]
        assert column == sorted(column)
        assert [alpha(i, 20, 0.25, tau + 1) for i in range(1, 21)] <= column


def test_layers_are_weight_modules_with_their_norms():
    model = ue.models.create("cnn", 10, 3, width=0.25)
    units = layer_units(model)
    assert [name for name, _ in units] == ["features.0", "features.4", "features.7", "features.11",
                                           "features.14", "fc"]
    assert sum(len(params) for _, params in units) == len(list(model.parameters()))


def _model(seed=0):
    return small_cnn(seed)


KW = dict(batch_size=32, lr=0.05, schedule="cosine", seed=1, progress=False)


def test_a_rollback_restores_the_weights_exactly_and_slows_the_shallow_layers(small_cifar):
    train_set, test_set = small_cifar
    model = _model()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    defense = ue.defenses.create("st", gamma=0.0, acm_per_class=5)          # every epoch triggers
    result = ue.train(model, train_set, test_set, epochs=1, defense=defense, **KW)
    row = result.history.iloc[0]
    assert row.rollback and row.tau == 1 and row.phase == "staged"
    assert all(torch.equal(v, initial[k]) for k, v in result.model.state_dict().items())
    assert row.alpha == pytest.approx([alpha(i, 6, 0.25, 1) for i in range(1, 7)])


def test_rollbacks_stop_after_one_over_beta_minus_one(small_cifar):
    train_set, _ = small_cifar
    result = ue.train(_model(), train_set, epochs=5, defense=ue.defenses.create("st", gamma=0.0, acm_per_class=5),
                      **KW)
    history = result.history
    assert history.tau.tolist() == [1, 2, 3, 3, 3]
    assert history.rollback.tolist() == [True, True, True, False, False]
    assert history.alpha.iloc[-1] == pytest.approx([alpha(i, 6, 0.25, 3) for i in range(1, 7)])
    never = ue.train(_model(), train_set, epochs=2, defense=ue.defenses.create("st", gamma=math.inf,
                                                                                    acm_per_class=5), **KW)
    assert never.history.tau.tolist() == [0, 0] and not never.history.rollback.any()
    assert never.history.alpha.iloc[-1] == (1.0,) * 6 and (never.history.acm > 0).all()


def test_groups_are_built_once_and_carry_the_factors(small_cifar):
    train_set, _ = small_cifar
    seen = []

    class Spy(ue.defenses.staged.StagedTraining):
        def on_epoch_end(self, trainer, epoch):
            row = super().on_epoch_end(trainer, epoch)
            groups = trainer.optimizer.param_groups
            seen.append(([id(trainer.optimizer)] + [[id(p) for p in g["params"]] for g in groups],
                         [g["lr_factor"] for g in groups]))
            return row

    ue.train(_model(), train_set, epochs=2, defense=Spy(gamma=0.0, acm_per_class=5, lr_scale=2.0), **KW)
    assert seen[0][0] == seen[1][0] and len(seen[0][0]) == 1 + 6        # one optimizer, six groups, same tensors
    assert seen[1][1] == pytest.approx([2.0 * alpha(i, 6, 0.25, 2) for i in range(1, 7)])


def test_st_full_fine_tunes_every_layer_with_a_restarted_schedule(small_cifar):
    train_set, _ = small_cifar
    result = ue.train(_model(), train_set, epochs=4, defense=ue.defenses.create("st-full", gamma=0.0,
                                                                                 acm_per_class=5), **KW)
    history = result.history
    assert history.phase.tolist() == ["staged", "staged", "finetune", "finetune"]
    assert history.alpha.iloc[1] == (1.0,) * 6 and history.rollback.iloc[2:].eq(False).all()
    # group 0's lr: epoch 1 ends the staged cosine (small); epoch 2 restarts at 3 x the base lr.
    assert history.lr.iloc[2] > history.lr.iloc[1]
    assert history.tau.iloc[-1] == 2


def test_resume_gives_the_uninterrupted_history(small_cifar, tmp_path):
    train_set, test_set = small_cifar

    class Interrupt(ue.defenses.staged.StagedTraining):
        stop_at = None

        def on_epoch_end(self, trainer, epoch):
            if epoch == self.stop_at:
                raise KeyboardInterrupt
            return super().on_epoch_end(trainer, epoch)

    params = dict(gamma=0.0, acm_per_class=5, cg=True, finetune_fraction=0.5)
    full = ue.train(_model(), train_set, test_set, epochs=4, defense=Interrupt(**params), **KW)
    checkpoint = tmp_path / "st.pt"
    interrupted = Interrupt(**params)
    interrupted.stop_at = 2
    with pytest.raises(KeyboardInterrupt):
        ue.train(_model(), train_set, test_set, epochs=4, defense=interrupted, checkpoint=checkpoint, **KW)
    resumed = ue.train(_model(seed=5), train_set, test_set, epochs=4, defense=Interrupt(**params),
                       checkpoint=checkpoint, **KW)
    columns = ["train_loss", "test_acc", "acm", "tau", "rollback", "alpha"]
    assert resumed.history[columns].equals(full.history[columns])


@pytest.mark.parametrize("params, match", [
    ({"gamma": -1.0}, "gamma"), ({"beta": 0.0}, "beta"), ({"acm_per_class": 1}, "acm_per_class"),
    ({"finetune_fraction": 1.0}, "finetune_fraction"), ({"cg": "yes"}, "cg"), ({"lr_scale": 0}, "lr_scale"),
])
def test_bad_arguments_fail_in_one_line(params, match):
    with pytest.raises(ValueError, match=match):
        ue.defenses.create("st", **params)


def test_bad_layer_or_too_short_budget_fail_before_training(small_cifar):
    train_set, _ = small_cifar
    with pytest.raises(ValueError, match="acm_layer 'conv9' is not a module"):
        ue.train(_model(), train_set, epochs=1, defense=ue.defenses.create("st", acm_layer="conv9"), **KW)
    with pytest.raises(ValueError, match="acm_per_class=100 exceeds the 20 training images"):
        ue.train(_model(), train_set, epochs=1, defense=ue.defenses.create("st"), **KW)
    with pytest.raises(ValueError, match="leaves no epoch"):
        ue.train(_model(), train_set, epochs=1, defense=ue.defenses.create("st-full", acm_per_class=5), **KW)


def test_transplanted_layers_are_copied_and_frozen():
    source, target = _model(seed=0), _model(seed=1)
    names = ue.defenses.staged.transplant_layers(source, target, "shallow", 2)
    assert names == ["features.0", "features.4"]
    assert torch.equal(target.features[0].weight, source.features[0].weight)
    assert torch.equal(target.features[1].running_mean, source.features[1].running_mean)
    assert not target.features[0].weight.requires_grad and target.features[7].weight.requires_grad
    assert not torch.equal(target.features[7].weight, source.features[7].weight)
    deep = ue.defenses.staged.transplant_layers(source, _model(seed=2), "deep", 1)
    assert deep == ["fc"]
    with pytest.raises(ValueError, match="count"):
        ue.defenses.staged.transplant_layers(source, _model(), "deep", 6)
    with pytest.raises(ValueError, match="which"):
        ue.defenses.staged.transplant_layers(source, _model(), "middle", 1)


def test_tsne_is_seeded():
    features = torch.randn(60, 8, generator=torch.Generator().manual_seed(0))
    first = ue.acm.tsne(features, seed=0)
    assert first.shape == (60, 2) and torch.equal(first, ue.acm.tsne(features, seed=0))
