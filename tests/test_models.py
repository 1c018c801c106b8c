import math

import pytest
import torch

from uexlib.models import create, list_models

# Small widths keep the big models (WRN-34-10, DenseNet-121) fast on CPU.
TEST_WIDTH = 0.25
SMALL_MODELS = {"cnn", "convnet", "resnet18"}


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    # Batch-2 forwards gain nothing from intra-op threads, and when another
    # process keeps a core busy, OpenMP barriers make each op wait on it
    # (DenseNet-121 took 6 s instead of 0.1 s per step with 2 threads).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _forward_with_input_grad(model: torch.nn.Module, x: torch.Tensor):
    x = x.clone().requires_grad_(True)
    out = model(x)
    out.sum().backward()
    return out, x.grad


def test_registry_lists_all_families():
    names = list_models()
    assert names == sorted(names)
    expected = {"cnn", "convnet", "densenet121", "mobilenetv2", "resnet18", "resnet50", "vgg16", "wrn28_10", "wrn34_10"}
    assert expected <= set(names)


@pytest.mark.parametrize("name", list_models())
def test_forward_shape_and_input_gradient(name):
    torch.manual_seed(0)
    model = create(name, num_classes=10, in_channels=3, width=TEST_WIDTH)
    out, grad = _forward_with_input_grad(model, torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()
    assert grad is not None and grad.shape == (2, 3, 32, 32)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["cnn", "convnet", "resnet18"])
def test_single_channel_28x28(name):
    model = create(name, num_classes=10, in_channels=1, width=TEST_WIDTH)
    out, grad = _forward_with_input_grad(model, torch.rand(2, 1, 28, 28))
    assert out.shape == (2, 10)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("size", [28, 40])
def test_other_spatial_sizes(name, size):
    model = create(name, num_classes=7, width=0.125).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, size, size)).shape == (2, 7)


@pytest.mark.parametrize("name", list_models())
def test_channels_last_and_autocast(name):
    model = create(name, width=0.125).to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 32, 32).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    out.float().sum().backward()
    assert out.shape == (2, 10)
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", list_models())
def test_width_scales_parameter_count(name):
    narrow, wide = (0.5, 1.0) if name in SMALL_MODELS else (0.25, 0.5)
    assert _num_params(create(name, width=narrow)) < _num_params(create(name, width=wide))


def test_smallest_width_builds():
    out = create("cnn", width=0.125)(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 10)


def test_normalization_is_a_fixed_buffer():
    model = create("cnn")
    buffers = dict(model.named_buffers())
    assert torch.all(buffers["normalize.mean"] == 0.5)
    assert torch.all(buffers["normalize.std"] == 0.25)
    assert not any(name.startswith("normalize.") for name, _ in model.named_parameters())


def test_num_classes_and_in_channels_are_used():
    model = create("cnn", num_classes=3, in_channels=5)
    assert model(torch.rand(2, 5, 32, 32)).shape == (2, 3)


def test_unknown_model_lists_available_names():
    with pytest.raises(KeyError) as info:
        create("resnt18")
    message = str(info.value)
    assert "resnt18" in message
    for name in list_models():
        assert name in message


@pytest.mark.parametrize(
    "kwargs, parameter",
    [
        ({"width": 0}, "width"),
        ({"width": -1}, "width"),
        ({"width": 9}, "width"),
        ({"width": math.nan}, "width"),
        ({"num_classes": 1}, "num_classes"),
        ({"num_classes": 2.5}, "num_classes"),
        ({"in_channels": 0}, "in_channels"),
    ],
)
def test_invalid_arguments_raise_value_error(kwargs, parameter):
    with pytest.raises(ValueError, match=parameter):
        create("cnn", **kwargs)


def test_width_error_message_gives_range_and_value():
    with pytest.raises(ValueError, match=r"width must be in \(0, 8\], got 0"):
        create("cnn", width=0)


def test_convnet_has_the_thesis_layers():
    """Thesis Sec. 3.3.1: convolutions of 32 and 64 filters, a fully connected layer of 1024 units."""
    model = create("convnet", num_classes=10, in_channels=1)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [c.out_channels for c in convs] == [32, 64]
    assert [(m.in_features, m.out_features) for m in linears] == [(64 * 7 * 7, 1024), (1024, 10)]
