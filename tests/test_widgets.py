"""The teaching labs' controls: the slider redraws with the chosen budget, the Run button runs the choice."""
import matplotlib
import matplotlib.pyplot
import pytest
import torch

matplotlib.use("Agg")

from uexlib import widgets  # noqa: E402


def test_the_slider_makes_noise_at_the_chosen_budget():
    asked = []

    def make_noise(eps):
        asked.append(eps)
        return torch.full((6, 3, 8, 8), eps)

    box = widgets.eps_preview(torch.zeros(6, 3, 8, 8, dtype=torch.uint8), make_noise, eps_255=8)
    slider, picture = box.children
    assert slider.value == 8 and asked == [8 / 255], "drawn once with the default budget"
    first = picture.value
    slider.value = 16
    assert asked[-1] == 16 / 255 and picture.value != first, "the preview is redrawn"
    with pytest.raises(ValueError, match="eps_255 must be in"):
        widgets.eps_preview(torch.zeros(6, 3, 8, 8, dtype=torch.uint8), make_noise, eps_255=0)


def test_run_runs_the_selected_choices():
    calls = []
    box, button = widgets.run_panel(lambda poison, defense: calls.append((poison, defense)),
                                    {"poison": ["em", "sc"], "defense": ["none", "jpeg"]}, {"defense": "jpeg"})
    button.click()
    assert calls == [("em", "jpeg")]
    box.children[0].value = "sc"
    button.click()
    assert calls[-1] == ("sc", "jpeg")


@pytest.mark.parametrize("choices, defaults, message", [
    ({"poison": []}, {}, "has no options"),
    ({"poison": ["em"]}, {"poison": "rem"}, "is not one of"),
    ({"poison": ["em"]}, {"defense": "none"}, "unknown choices"),
])
def test_run_panel_checks_its_choices(choices, defaults, message):
    with pytest.raises(ValueError, match=message):
        widgets.run_panel(lambda **kw: None, choices, defaults)


def test_an_error_in_the_run_reaches_the_caller():
    def broken(poison):
        raise RuntimeError("no such poison")

    _, button = widgets.run_panel(broken, {"poison": ["em"]})
    handler, = button._click_handlers.callbacks  # click() hands errors to IPython, which fails the cell
    with pytest.raises(RuntimeError, match="no such poison"):
        handler(button)


def test_the_panel_shows_the_figure_and_advances_its_progress_bar():
    seen = []

    def run(poison, progress):
        progress(1, 2)
        seen.append(bar.value)
        figure, ax = matplotlib.pyplot.subplots()
        ax.plot([0, 1], [0, 1])
        return figure

    box, button = widgets.run_panel(run, {"poison": ["em"]})
    row = box.children[1]
    bar, status = row.children[1], row.children[2]
    button.click()
    assert seen == [0.5] and bar.value == 1.0 and "done in" in status.value
    image, = box.children[2].children
    assert image.value[:8] == b"\x89PNG\r\n\x1a\n"
