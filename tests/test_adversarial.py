import pytest
import torch

import uexlib as ue
from uexlib.attacks import Evasion


@pytest.fixture(scope="module")
def cifar(data_root):
    return (ue.load_dataset("cifar10", "train", data_root, per_class=200),
            ue.load_dataset("cifar10", "test", data_root, per_class=30))


def _model():
    torch.manual_seed(0)
    return ue.models.create("cnn", 10, 3, width=0.5)


def _robust_acc(model, test_set, eps=8 / 255):
    attack = Evasion("pgd", eps=eps, steps=10, step_size=eps / 4)
    return ue.evaluate(model, test_set, device="cpu", attack=attack)["acc"]


def test_zero_radius_is_ordinary_training(cifar):
    train_set, test_set = cifar
    kwargs = dict(iterations=10, batch_size=64, lr=0.05, schedule="constant", progress=False, device="cpu")
    plain = ue.train(_model(), train_set, test_set, **kwargs)
    at = ue.train(_model(), train_set, test_set, defense=ue.defenses.create("pgd-at", eps=0.0), **kwargs)
    columns = ["train_loss", "train_acc", "test_acc"]
    assert at.history[columns].equals(plain.history[columns])


def test_fgsm_step_defaults_follow_the_papers():
    assert ue.defenses.create("fgsm-at", eps=8 / 255).params["step_size"] == pytest.approx(8 / 255)
    assert ue.defenses.create("fgsm-at", eps=8 / 255, random_start=True).params["step_size"] == \
        pytest.approx(1.25 * 8 / 255)
    assert ue.defenses.create("pgd-at", eps=4 / 255).params["step_size"] == pytest.approx(4 / 255 / 5)


@pytest.mark.parametrize("name, kwargs, match", [
    ("pgd-at", dict(eps=8), r"did you mean 8/255"),
    ("pgd-at", dict(norm="l3"), "norm"),
    ("pgd-at", dict(steps=0), "steps"),
    ("fgsm-at", dict(bn_mode="frozen"), "bn_mode"),
    ("fgsm-at", dict(norm="l2"), "takes no parameter 'norm'"),
])
def test_bad_arguments_are_named(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ue.defenses.create(name, **kwargs)


BUDGET = dict(epochs=8, batch_size=64, lr=0.05, schedule="onecycle", progress=False, device="cpu")


@pytest.fixture(scope="module")
def ordinary(cifar):
    train_set, test_set = cifar
    return ue.train(_model(), train_set, test_set, **BUDGET)


@pytest.mark.science
@pytest.mark.parametrize("name, kwargs", [("pgd-at", dict(eps=8 / 255, steps=5, step_size=2 / 255)),
                                          ("fgsm-at", dict(eps=8 / 255, random_start=True))])
def test_adversarial_training_on_clean_data_is_more_robust(cifar, ordinary, name, kwargs):
    """Madry et al.'s claim at small scale: 2,000 CIFAR-10 images, a small CNN, 8 epochs."""
    train_set, test_set = cifar
    plain = ordinary
    robust = ue.train(_model(), train_set, test_set, defense=ue.defenses.create(name, **kwargs), **BUDGET)
    plain_robust, at_robust = _robust_acc(plain.model, test_set), _robust_acc(robust.model, test_set)
    print(f"{name}: clean {plain.test_acc:.1f} / {robust.test_acc:.1f} %, "
          f"PGD-10 8/255 robust {plain_robust:.1f} / {at_robust:.1f} % (ordinary / adversarial)")
    assert at_robust >= plain_robust + 8


def test_profiles_fix_defense_settings_and_explicit_ones_win(tiny_set):
    exp = ue.Experiment(profile=ue.profiles.get("smoke"), train_set=tiny_set, test_set=tiny_set, seed=0)
    assert exp.defense("pgd-at").params["steps"] == ue.profiles.get("smoke").defenses["pgd-at"]["steps"]
    assert exp.defense("pgd-at", steps=7).params["steps"] == 7
    # The default step follows the steps: REM's eps/5 at 10 steps, 2 eps/steps otherwise.
    assert exp.defense("pgd-at", eps=4 / 255, steps=4).params["step_size"] == pytest.approx(2 / 255)
    bad = ue.Experiment(profile=ue.profiles.get("smoke", defenses={"pgd-at": {"rounds": 2}}), train_set=tiny_set,
                        test_set=tiny_set, seed=0)
    with pytest.raises(ValueError, match="profile 'smoke': defense 'pgd-at' takes no parameter 'rounds'"):
        bad.defense("pgd-at")
