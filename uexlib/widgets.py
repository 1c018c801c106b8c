"""Controls for the teaching labs: a noise-budget slider with live previews and a run panel.

In Jupyter both are live: moving the slider redraws the previews, the Run button runs the chosen
experiment, advancing a progress bar, and shows its figure. In the book they are the widgets'
saved state, rendered offline by the vendored widget JavaScript: the controls show the values the
notebook ran with and the outputs it produced (there is no kernel to call back).

Figures go into ``Image`` widgets and tables into ``HTML`` widgets rather than an ``Output``
widget: a notebook that captures output into an ``Output`` widget while nbclient executes it
(as ``uex book`` does) can hang waiting for the kernel's reply.
"""
from __future__ import annotations

import inspect
import io
import time
from typing import Callable

import ipywidgets as w
import matplotlib.pyplot as plt
import torch

from . import plot


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _show(result) -> w.Widget:
    """A widget holding ``result``: an image of a figure, the HTML of a table, else its text."""
    if isinstance(result, plt.Figure):
        return w.Image(value=_png(result), format="png", layout=w.Layout(max_width="100%"))
    html = getattr(result, "to_html", None)
    return w.HTML(html() if html is not None else f"<pre>{result}</pre>")


def eps_preview(images: torch.Tensor, make_noise: Callable[[float], torch.Tensor], eps_255: int = 8,
                max_255: int = 32, columns: int = 6) -> w.VBox:
    """A slider for the noise budget (in 1/255 steps) above clean / noise / perturbed previews.

    ``images``: uint8 (N, C, H, W), N >= ``columns``; ``make_noise(eps)`` returns perturbations on
    the [0, 1] scale within ``eps`` for those images.
    """
    if not 1 <= eps_255 <= max_255:
        raise ValueError(f"eps_255 must be in [1, {max_255}], got {eps_255}")
    slider = w.IntSlider(value=eps_255, min=1, max=max_255, step=1, description="ε (/255)", continuous_update=False)
    picture = w.Image(format="png", layout=w.Layout(max_width="100%"))
    clean = images[:columns]

    def redraw(change=None) -> None:
        noise = make_noise(slider.value / 255)[:columns]
        perturbed = (clean.float() / 255 + noise).clamp(0, 1)
        label = f"noise (eps {slider.value}/255)"
        picture.value = _png(plot.image_grid({"clean": clean, label: noise, "published": perturbed},
                                             columns=columns, noise_rows=(label,)))

    slider.observe(redraw, names="value")
    redraw()
    return w.VBox([slider, picture])


def run_panel(run: Callable[..., object], choices: dict[str, list], defaults: dict | None = None,
              label: str = "Run") -> tuple[w.VBox, w.Button]:
    """Drop-downs for ``choices`` ({name: options}), a Run button, a progress bar and a result area.

    Clicking calls ``run(**selected)`` and shows what it returns (a figure or a table). If ``run``
    takes a ``progress`` argument it receives a function ``progress(done, total)`` that advances
    the bar. The notebook clicks once itself (``button.click()``) so the book shows a finished run.
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
    bar = w.FloatProgress(value=0.0, min=0.0, max=1.0, description="progress")
    status = w.Label("ready")
    result_box = w.VBox([])
    takes_progress = "progress" in inspect.signature(run).parameters

    def progress(done: float, total: float) -> None:
        bar.value = min(1.0, done / total) if total else 1.0

    def go(_=None) -> None:
        chosen = {name: menu.value for name, menu in menus.items()}
        bar.value, status.value = 0.0, "running " + ", ".join(f"{k}={v}" for k, v in chosen.items())
        started = time.perf_counter()
        result = run(**chosen, **({"progress": progress} if takes_progress else {}))
        bar.value = 1.0
        status.value = (", ".join(f"{k}={v}" for k, v in chosen.items())
                        + f": done in {time.perf_counter() - started:.0f} s")
        result_box.children = () if result is None else (_show(result),)

    button.on_click(go)
    return w.VBox([*menus.values(), w.HBox([button, bar, status]), result_box]), button
