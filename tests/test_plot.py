"""Figures stay legible at the size the book shows them (72 dpi)."""
import matplotlib
import pandas as pd
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


def test_scatter_titles_and_legend_do_not_overlap_the_panels():
    gen = torch.Generator().manual_seed(0)
    points, labels = torch.randn(200, 2, generator=gen), torch.randint(0, 10, (200,), generator=gen)
    titles = ["NT on clean data, clean images\nACM 0.0632", "NT on em-samplewise, poisoned images\nACM 0.107"]
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    fig = plot.scatter_2d({t: (points, labels) for t in titles}, class_names=classes)
    fig.set_dpi(72)
    renderer = fig.canvas.get_renderer()
    panels = [ax.get_window_extent(renderer) for ax in fig.axes]
    heads = [ax.title.get_window_extent(renderer) for ax in fig.axes]
    legend = fig.legends[0].get_window_extent(renderer)
    assert not heads[0].overlaps(heads[1]), "the two panel titles run into each other"
    assert not any(legend.overlaps(box) for box in panels), "the legend covers a panel"
    assert legend.x1 <= fig.bbox.x1 + 1, "the legend is cut off at the right edge"


def test_a_heat_map_of_twelve_columns_fits_the_page_with_its_labels_legible():
    table = pd.DataFrame(torch.rand(23, 12).mul(100).numpy(), index=[f"defense-{i}" for i in range(23)],
                         columns=[f"attack-{j}" for j in range(12)])
    table.iloc[0, 0] = float("nan")                                # a cell not measured yet
    fig = plot.heatmap(table, title="profile lab")
    assert fig.get_size_inches()[0] <= 8.0, "wider than the page: the book would shrink its text"
    fig.set_dpi(72)
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    labels = ax.get_xticklabels() + ax.get_yticklabels()
    assert all(t.get_window_extent(renderer).height >= 8 for t in labels if t.get_text())
    cell_h = ax.get_window_extent(renderer).height / 23
    values = [t for t in ax.texts if t.get_text() not in ("",)]
    assert len(values) == 23 * 12 and values[0].get_text() == "-"
    assert all(t.get_window_extent(renderer).height <= cell_h for t in values), "a value spills out of its cell"


def test_accuracy_curves_go_into_the_panel_they_are_given():
    import matplotlib.pyplot as plt
    points = pd.DataFrame({"data": ["clean", "clean", "em", "em"], "radius_255": [0, 2, 0, 2],
                           "value": [60.0, 55.0, 20.0, 50.0], "paper_value": [94.0, 92.0, None, None]})
    fig, axes = plt.subplots(2, 1)
    assert plot.accuracy_vs_radius(points, title="8/255", ax=axes[1]) is fig
    assert not axes[0].lines, "the other panel stays empty"
    assert [line.get_label() for line in axes[1].lines] == ["clean (ours)", "clean (paper)", "em (ours)"]
    assert axes[1].get_title() == "8/255"
    plt.close(fig)


def test_every_training_set_gets_a_line_past_the_colour_cycle():
    import matplotlib.pyplot as plt
    labels = [f"poison-{i}" for i in range(13)]
    points = pd.DataFrame({"data": [d for d in labels for _ in range(2)], "radius_255": [0, 2] * 13,
                           "value": [float(i) for i in range(26)]})
    fig = plot.accuracy_vs_radius(points)
    lines = fig.axes[0].lines
    assert [line.get_label() for line in lines] == [f"{d} (ours)" for d in labels]
    styles = {(line.get_color(), line.get_marker()) for line in lines}
    assert len(styles) == 13, "two training sets drawn alike"
    histories = {d: pd.DataFrame({"epoch": [0, 1], "train_acc": [10.0, 20.0], "test_acc": [9.0, 19.0]})
                 for d in labels}
    curves = plot.training_curves(histories).axes[0].lines
    assert len(curves) == 26
    assert len({(line.get_color(), line.get_marker()) for line in curves[1::2]}) == 13
    plt.close("all")
