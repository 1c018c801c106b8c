"""Figures stay legible at the size the book shows them (72 dpi)."""
import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from uexlib import plot  # noqa: E402


@pytest.mark.parametrize("columns", [4, 10, 16])
def test_image_grid_labels_are_legible_and_the_figure_keeps_its_width(columns):
    rows = {"clean": torch.zeros(columns, 3, 32, 32, dtype=torch.uint8), "noise (em)": torch.randn(columns, 3, 32, 32)}
    fig = plot.image_grid(rows, columns=columns, noise_rows=("noise (em)",))
    fig.set_dpi(72)
    renderer = fig.canvas.get_renderer()
    labels = [ax._left_title for ax in fig.axes if ax.get_title(loc="left")]
    assert [t.get_text() for t in labels] == ["clean", "noise (em)"]
    assert all(t.get_window_extent(renderer).height >= 9 for t in labels), "labels under 9 px at 72 dpi"
    assert fig.get_size_inches()[0] == pytest.approx(7.0)
    image_width = fig.axes[0].get_window_extent(renderer).width
    assert image_width >= 0.8 * 7.0 * 72 / columns, "the images fill the width"
