"""Controls for the teaching labs: a noise-budget slider with live previews and a run panel.

In Jupyter both are live: moving the slider redraws the previews, the Run button runs the chosen
experiment with a progress bar and shows its figure. In the book they are the widgets' saved
state, rendered offline by the vendored widget JavaScript: the controls show the values the
notebook ran with and the outputs it produced (there is no kernel to call back).
"""
from __future__ import annotations

from typing import Callable

import ipywidgets as w
import matplotlib.pyplot as plt
import torch
from IPython.display import display

from . import plot


def _show(out: w.Output, figure) -> None:
    # Not clear_output(wait=True): inside an Output widget it hangs a notebook executed by nbclient.
    out.clear_output()
    with out:
        display(figure)
    plt.close(figure)


def eps_preview(images: torch.Tensor, make_noise: Callable[[float], torch.Tensor], eps_255: int = 8,
                max_255: int = 32, columns: int = 6) -> w.VBox:
    """A slider for the noise budget (in 1/255 steps) above clean / noise / perturbed previews.

    ``images``: uint8 (N, C, H, W), N >= ``columns``; ``make_noise(eps)`` returns perturbations on
    the [0, 1] scale within ``eps`` for those images.
    """
    if not 1 <= eps_255 <= max_255:
        raise ValueError(f"eps_255 must be in [1, {max_255}], got {eps_255}")
    slider = w.IntSlider(value=eps_255, min=1, max=max_255, step=1, description="ε (/255)", continuous_update=False)
    out = w.Output()
    clean = images[:columns]

    def redraw(change=None) -> None:
        noise = make_noise(slider.value / 255)[:columns]
        perturbed = (clean.float() / 255 + noise).clamp(0, 1)
        _show(out, plot.image_grid({"clean": clean, f"noise (eps {slider.value}/255)": noise,
                                    "published": perturbed}, columns=columns, noise_rows=(f"noise (eps {slider.value}/255)",)))

    slider.observe(redraw, names="value")
    redraw()
    return w.VBox([slider, out])


def run_panel(run: Callable[..., object], choices: dict[str, list], defaults: dict | None = None,
              label: str = "Run") -> tuple[w.VBox, w.Button]:
    """Drop-downs for ``choices`` ({name: options}), a Run button and an output area.

    Clicking calls ``run(**selected)`` and shows what it returns (a figure or a table); the
    notebook clicks once itself (``button.click()``) so the book shows a finished run.
    """
    defaults = defaults or {}
    unknown = set(defaults) - set(choices)
    if unknown:
        raise ValueError(f"defaults name unknown choices {sorted(unknown)}; choices: {', '.join(choices)}")
    menus = {}
    for name, options in choices.items():
        if not options:
            raise ValueError(f"choice {name!r} has no options")
        value = defaults.get(name, options[0])
        if value not in options:
            raise ValueError(f"default {name}={value!r} is not one of {options}")
        menus[name] = w.Dropdown(options=options, value=value, description=name)
    button = w.Button(description=label, button_style="primary")
    out = w.Output()

    def go(_=None) -> None:
        out.clear_output()
        failure = None
        with out:  # an Output widget swallows exceptions: keep this one for the caller
            try:
                result = run(**{name: menu.value for name, menu in menus.items()})
            except Exception as error:  # noqa: BLE001 (re-raised below, outside the widget)
                failure = error
        if failure is not None:
            raise failure
        if result is not None:
            with out:  # below the progress bars of the run
                display(result)
            if isinstance(result, plt.Figure):
                plt.close(result)

    button.on_click(go)
    return w.VBox([*menus.values(), button, out]), button
