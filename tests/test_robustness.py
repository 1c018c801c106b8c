"""SEM's robustness measures (Defs. 1-2): R_theta of a surrogate, R_delta_u of a noise, on real CIFAR-10."""
import pytest
import torch

import uexlib as ue
from uexlib.generators.robustness import noise_robustness, surrogate_robustness

SETTINGS = dict(surrogate="cnn", surrogate_width=0.25, batch_size=50, steps=3, eot_samples=1, adv_steps=2,
                progress=False, device="cpu")


@pytest.fixture(scope="module")
def cifar(data_root):
    return ue.load_dataset("cifar10", "train", data_root, per_class=20)


@pytest.fixture(scope="module")
def trained(cifar):
    torch.manual_seed(0)
    model = ue.models.create("cnn", 10, 3, width=0.25)
    ue.train(model, cifar, epochs=4, batch_size=50, lr=0.05, schedule="onecycle", progress=False, device="cpu")
    return model


def _measure(eps_adv, **kwargs):
    return ue.generators.create("rem", eps=8 / 255, eps_adv=eps_adv, **{**SETTINGS, **kwargs})


def test_surrogate_robustness_falls_as_the_attack_grows_and_leaves_the_model_alone(cifar, trained):
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    weak = surrogate_robustness(trained, cifar, _measure(1 / 255), batches=4)
    strong = surrogate_robustness(trained, cifar, _measure(16 / 255), batches=4)
    assert weak > strong + 0.1
    assert weak == surrogate_robustness(trained, cifar, _measure(1 / 255), batches=4)
    # The noise steps run whatever the measure's own noise_perturbation is (Def. 1 has the max inside).
    assert weak == surrogate_robustness(trained, cifar, _measure(1 / 255, noise_perturbation="random"), batches=4)
    assert all(torch.equal(before[k], v) for k, v in trained.state_dict().items())


def test_noise_robustness_falls_as_the_adversarial_trainer_grows_stronger(cifar):
    """Eq. 9: the trainer's loss under attacks of 8/255 stays above its loss under attacks of 1/255."""
    weak = noise_robustness(cifar, _measure(1 / 255), iterations=20)
    strong = noise_robustness(cifar, _measure(8 / 255), iterations=20)
    assert weak > strong + 0.05
    assert weak == noise_robustness(cifar, _measure(1 / 255), iterations=20)
    assert weak != noise_robustness(cifar, _measure(1 / 255), iterations=20, seed=1)


@pytest.mark.parametrize("measure, match", [("rem", "measure must be a rem generator"),
                                            (None, "measure must be a rem generator")])
def test_the_measure_must_be_a_rem_generator(cifar, trained, measure, match):
    with pytest.raises(ue.ParameterError, match=match):
        surrogate_robustness(trained, cifar, measure)


def test_the_measures_need_an_attack_radius(cifar):
    with pytest.raises(ue.ParameterError, match="eps_adv must be > 0"):
        noise_robustness(cifar, _measure(0.0))
