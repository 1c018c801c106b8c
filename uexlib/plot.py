"""Figures the notebooks show, so notebooks stay short."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import torch

# Points for legends, annotations and labels: at least 9 px on a page that shows figures at 72 dpi.
LEGIBLE = 9
MARKERS = "sD^v<>ph*"


def _styles(count: int, first_marker: str | None) -> list[tuple[str, str | None]]:
    """``count`` distinct (colour, marker) pairs: the colour cycle with ``first_marker``, then again
    with the next marker of ``MARKERS``, so an 11th line is told apart from the 1st, not left out."""
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = (first_marker, *MARKERS)
    return [(colours[i % len(colours)], markers[(i // len(colours)) % len(markers)]) for i in range(count)]


def training_curves(histories: dict[str, pd.DataFrame], title: str = ""):
    """Train accuracy (dashed) and clean test accuracy (solid) per epoch, one colour per run."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for (label, history), (colour, marker) in zip(histories.items(), _styles(len(histories), None)):
        epochs = history["epoch"] + 1
        ax.plot(epochs, history["train_acc"], "--", color=colour, label=f"{label}: train (its training data)")
        ax.plot(epochs, history["test_acc"], "-", color=colour, marker=marker, markersize=3,
                label=f"{label}: clean test")
    ax.set(xlabel="epoch", ylabel="accuracy (%)", ylim=(0, 100), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=LEGIBLE, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


def _to_hwc(images: torch.Tensor):
    images = images.float()
    if images.max() > 1.5:
        images = images / 255
    return images.clamp(0, 1).permute(0, 2, 3, 1).squeeze(-1).numpy()


def image_grid(rows: dict[str, torch.Tensor], columns: int = 8, noise_rows: tuple[str, ...] = ()):
    """One row per entry of ``rows`` (uint8 or [0, 1] images, N >= ``columns``).

    Rows named in ``noise_rows`` hold perturbations in [-eps, eps]; they are rescaled to [0, 1]
    per image so the pattern is visible.
    """
    # 7 inches wide whatever the column count, so a label keeps its size on the page; each row's
    # label sits above it rather than beside it, where it would take width from the images.
    cell = 7.0 / columns
    fig, axes = plt.subplots(len(rows), columns, figsize=(7.0, (cell + 0.3) * len(rows)), squeeze=False,
                             gridspec_kw={"wspace": 0.04, "hspace": 0.3, "left": 0.01, "right": 0.99,
                                          "bottom": 0.01, "top": 1 - 0.3 / ((cell + 0.3) * len(rows))})
    for r, (label, images) in enumerate(rows.items()):
        images = images[:columns].float()
        if label in noise_rows:
            low = images.amin(dim=(1, 2, 3), keepdim=True)
            high = images.amax(dim=(1, 2, 3), keepdim=True)
            images = (images - low) / (high - low).clamp_min(1e-12)
        for c, image in enumerate(_to_hwc(images)):
            axes[r, c].imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_title(label, loc="left", fontsize=LEGIBLE + 2, pad=3)
    return fig


def accuracy_vs_radius(table: pd.DataFrame, title: str = "", ax=None):
    """Clean test accuracy against the adversarial-training radius, one line per training set.

    ``table`` has columns ``data`` (a label), ``radius_255`` (the radius in 1/255 units),
    ``value`` (ours) and optionally ``paper_value`` (drawn dotted in the same colour). With ``ax``
    the lines go into that axes (one panel of a larger figure) and its figure is returned.
    """
    fig, ax = plt.subplots(figsize=(6.0, 3.8)) if ax is None else (ax.figure, ax)
    groups = list(table.groupby("data", sort=False))
    for (label, rows), (colour, marker) in zip(groups, _styles(len(groups), "o")):
        rows = rows.sort_values("radius_255")
        ax.plot(rows["radius_255"], rows["value"], "-", marker=marker, color=colour, label=f"{label} (ours)")
        if "paper_value" in rows and rows["paper_value"].notna().any():
            ax.plot(rows["radius_255"], rows["paper_value"], ":", color=colour, label=f"{label} (paper)")
    ax.set(xlabel="adversarial training radius (/255)", ylabel="clean test accuracy (%)", ylim=(0, 100), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=LEGIBLE, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


def correlations(table: pd.DataFrame, x_columns: dict[str, str], y: str, y_label: str, title: str = ""):
    """One scatter panel per column of ``x_columns`` ({column: axis label}) against ``y``.

    Each point is labelled by the ``label`` column; each panel's title gives Pearson's r (SEM Fig. 3).
    """
    fig, axes = plt.subplots(1, len(x_columns), figsize=(4.2 * len(x_columns), 3.6), squeeze=False)
    for ax, (column, label) in zip(axes[0], x_columns.items()):
        ax.scatter(table[column], table[y])
        for _, row in table.iterrows():
            ax.annotate(str(row["label"]), (row[column], row[y]), fontsize=LEGIBLE, xytext=(3, 3),
                        textcoords="offset points")
        r = table[column].corr(table[y]) if len(table) > 2 else float("nan")
        ax.set(xlabel=label, ylabel=y_label, title=f"Pearson r = {r:.2f}")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=LEGIBLE + 2)
    fig.tight_layout()
    return fig



_LABELS = {"train_acc": "train accuracy (%)", "test_acc": "clean test accuracy (%)", "acm": "ACM on D^s",
           "gmv": "GMV (first layer)"}


def epoch_metrics(histories: dict[str, pd.DataFrame], metrics: tuple[str, ...] = ("test_acc", "acm"),
                  log_scale: tuple[str, ...] = ("acm", "gmv"), gamma: float | None = None, title: str = ""):
    """One panel per history column in ``metrics`` against the epoch, one colour per run.

    Epochs a staged run rolled back are marked with a cross; ``gamma`` draws ST's threshold on the
    ``acm`` panel. Columns in ``log_scale`` get a log axis.
    """
    fig, axes = plt.subplots(len(metrics), 1, figsize=(6.4, 1.2 + 2.0 * len(metrics)), sharex=True, squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (label, history), colour in zip(histories.items(), colours):
        epochs = history["epoch"] + 1
        undone = history["rollback"].astype(bool) if "rollback" in history else None
        for ax, metric in zip(axes[:, 0], metrics):
            if metric not in history:
                continue
            ax.plot(epochs, history[metric], "-o", ms=3, color=colour, label=label)
            if undone is not None and undone.any():
                ax.plot(epochs[undone], history[metric][undone], "x", ms=9, mew=2, color=colour)
    for ax, metric in zip(axes[:, 0], metrics):
        ax.set(ylabel=_LABELS.get(metric, metric), yscale="log" if metric in log_scale else "linear")
        if metric == "acm" and gamma is not None and 0 < gamma < float("inf"):
            ax.axhline(gamma, color="0.3", ls=":", label=f"gamma = {gamma:g}")
        ax.grid(alpha=0.3)
    axes[0, 0].set_title(title)
    axes[-1, 0].set_xlabel("epoch")
    axes[0, 0].legend(fontsize=LEGIBLE, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


def scatter_2d(panels: dict[str, tuple[torch.Tensor, torch.Tensor]], class_names: tuple[str, ...] = ()):
    """Side-by-side 2-D embeddings (t-SNE), points coloured by class: ``{title: (points (N, 2), labels)}``."""
    legend_in = 1.8 if class_names else 0.0            # room to the right of the panels for the legend
    width = 3.6 * len(panels) + legend_in
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 3.9), squeeze=False)
    for ax, (title, (points, labels)) in zip(axes[0], panels.items()):
        cloud = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=5, vmin=-0.5, vmax=9.5)
        ax.set(xticks=[], yticks=[])
        ax.set_title(title, fontsize=LEGIBLE + 1, wrap=True)
    fig.tight_layout(rect=(0, 0, 1 - legend_in / width, 1))
    if class_names:
        handles = [plt.Line2D([], [], ls="", marker="o", color=cloud.cmap(cloud.norm(i)))
                   for i in range(len(class_names))]
        fig.legend(handles, class_names, fontsize=LEGIBLE, loc="center right", frameon=False)
    return fig


def bars(frame: pd.DataFrame, label: str, value: str, reference: str | None = None, xlabel: str = "",
         log: bool = False, title: str = ""):
    """Horizontal bars of ``frame[value]`` per ``frame[label]``; ``reference`` (the paper's) as hollow bars."""
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(frame) + 1.2))
    positions = range(len(frame))
    height = 0.4 if reference else 0.7
    ax.barh([p - (height / 2 if reference else 0) for p in positions], frame[value], height=height, label="ours")
    if reference:
        ax.barh([p + height / 2 for p in positions], frame[reference], height=height, fill=False, hatch="//",
                label="paper")
        ax.legend(fontsize=LEGIBLE, loc="lower right")
    ax.set_yticks(list(positions), frame[label], fontsize=LEGIBLE)
    ax.invert_yaxis()
    ax.set(xlabel=xlabel, xscale="log" if log else "linear", title=title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def heatmap(table: pd.DataFrame, title: str = "", label: str = "clean test accuracy (%)", vmax: float = 100.0):
    """``table`` (rows x columns of numbers, NaN for not measured) as coloured cells with their values.

    Cells are 0.45 x 0.32 inches, so text keeps its size where the book shows the figure at most
    about 8 inches wide: put the longer dimension in the rows (a table of 12 columns fits).
    """
    rows, columns = table.shape
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * columns + 2.6), 0.32 * rows + 1.4))
    image = ax.imshow(table.to_numpy(dtype=float), cmap="viridis", vmin=0, vmax=vmax, aspect="auto")
    ax.set_xticks(range(columns), table.columns, rotation=40, ha="right", fontsize=LEGIBLE)
    ax.set_yticks(range(rows), table.index, fontsize=LEGIBLE)
    for r in range(rows):
        for c in range(columns):
            value = table.iat[r, c]
            text = "-" if pd.isna(value) else f"{value:.0f}"
            ax.text(c, r, text, ha="center", va="center", fontsize=LEGIBLE,
                    color="black" if not pd.isna(value) and value > 0.6 * vmax else "white")
    ax.set_facecolor("0.85")
    fig.colorbar(image, ax=ax, label=label, fraction=0.04)
    ax.set_title(title, fontsize=LEGIBLE + 1)
    fig.tight_layout()
    return fig
