"""The registration study's figures: Fig. 2, Fig. 3, training curves and Dice distributions.

Each function writes one PNG through :func:`medrepro.report.figures.save_figure`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from medrepro.report.figures import (
    assign_colours, draw_box_plots, draw_contours, draw_label_overlay, draw_loss_curves, group_runs, legend_below,
    line_entry, save_figure, show_image, split_entries,
)
from medrepro.studies.chest.subjects import HEART, LABEL_NAMES, LEFT_LUNG, RIGHT_LUNG
from medrepro.studies.chest.tables import display_method
from medrepro.report.tables import order_with_extras

LABEL_COLOURS = {RIGHT_LUNG: "#1f77b4", LEFT_LUNG: "#2ca02c", HEART: "#d62728"}
VARIANT_STYLE = {
    "a": {"color": "#2ca02c", "linewidth": 2.5, "marker": "o", "label": "(a) plausible: border erosion"},
    "b": {"color": "#d62728", "linewidth": 1.2, "marker": "s", "label": "(b) right lung apex removed"},
    "c": {"color": "#ff7f0e", "linewidth": 1.2, "marker": "^", "label": "(c) left lung base removed"},
    "d": {"color": "#9467bd", "linewidth": 1.2, "marker": "D", "label": "(d) heart part removed (right lung base if no heart)"},
}


# ----------------------------------------------------------------------------- Fig. 2


def plot_anatomical_loss(df: pd.DataFrame, out: str | Path) -> Path:
    """L_ce (top) and L_ae (bottom) for every mask and modified version, as in Fig. 2.

    ``df`` is the output of :func:`medrepro.studies.chest.anatomical_loss.anatomical_loss_experiment`.
    """
    fig = Figure(figsize=(9, 6.5), layout="constrained")
    ax_ce, ax_ae = fig.subplots(2, 1, sharex=True)
    masks = sorted(df["mask_index"].unique())
    positions = {m: i + 1 for i, m in enumerate(masks)}
    for variant in sorted(df["variant"].unique()):
        rows = df[df["variant"] == variant].sort_values("mask_index")
        style = VARIANT_STYLE.get(variant, {"label": f"({variant})"})
        x = rows["mask_index"].map(positions)
        ax_ce.plot(x, rows["l_ce"], markersize=4, **style)
        ax_ae.plot(x, rows["l_ae"], markersize=4, **style)
    changed = sorted(df["changed_pixels"].unique())
    ax_ce.set_title(f"Pixel-level loss $L_{{ce}}$ ({', '.join(map(str, changed))} pixels changed)")
    ax_ce.set_ylabel("$L_{ce}$")
    ax_ae.set_title("Global anatomical loss $L_{ae}$ (squared distance between codes)")
    ax_ae.set_ylabel("$L_{ae}$")
    ax_ae.set_xlabel("Reference mask")
    ax_ae.set_xticks(range(1, len(masks) + 1))
    for ax in (ax_ce, ax_ae):
        ax.grid(alpha=0.3)
    legend_below(fig, ax_ae.get_legend_handles_labels()[0], columns=2, fontsize=9)
    fig.suptitle("Local versus global loss on plausible (a) and non-plausible (b-d) masks")
    return save_figure(fig, out)


# ----------------------------------------------------------------------------- Fig. 3


def draw_label_contours(ax, labels: np.ndarray, **kwargs) -> None:
    """Outlines of the lungs and heart in the study's label colours."""
    draw_contours(ax, labels, LABEL_COLOURS, **kwargs)


def _show_labels(ax, labels: np.ndarray, fixed_labels: np.ndarray) -> None:
    """A label map filled on black, with the fixed mask's outline dashed."""
    show_image(ax, np.zeros(np.shape(labels)))
    draw_label_overlay(ax, labels, LABEL_COLOURS, alpha=0.6)
    draw_label_contours(ax, fixed_labels, linewidths=0.8, linestyles="dashed")


def _dataset_block(subfig, example: Mapping) -> None:
    methods = list(example["methods"].items())
    axes = np.atleast_2d(subfig.subplots(len(methods) + 1, 2))
    fixed_labels = np.asarray(example["fixed_labels"])
    show_image(axes[0, 0], np.asarray(example["moving_image"]))
    draw_label_contours(axes[0, 0], np.asarray(example["moving_labels"]), linewidths=0.8)
    axes[0, 0].set_title("moving", fontsize=9)
    show_image(axes[0, 1], np.asarray(example["fixed_image"]))
    draw_label_contours(axes[0, 1], fixed_labels, linewidths=0.8)
    axes[0, 1].set_title("fixed", fontsize=9)
    axes[0, 0].set_ylabel("input", fontsize=9)
    for row, (method, result) in enumerate(methods, start=1):
        show_image(axes[row, 0], np.asarray(result["warped_image"]))
        draw_label_contours(axes[row, 0], fixed_labels, linewidths=0.8)
        _show_labels(axes[row, 1], np.asarray(result["warped_labels"]), fixed_labels)
        axes[row, 0].set_ylabel(display_method(method), fontsize=9)
        if row == 1:
            axes[row, 0].set_title("warped image", fontsize=9)
            axes[row, 1].set_title("warped labels", fontsize=9)
    subfig.suptitle(str(example["dataset"]), fontsize=12, fontweight="bold")


def plot_registration_examples(examples: Sequence[Mapping], out: str | Path) -> Path:
    """Fig. 3: one block per dataset (side by side), one row per method.

    The first row shows the moving and fixed images with their own mask
    contours; every method row shows the warped image with the fixed mask's
    contour and the warped label map with the fixed mask's contour dashed.

    Each example holds dataset, moving_image, fixed_image, moving_labels,
    fixed_labels and ``methods``: method -> {"warped_image", "warped_labels"}
    in display order. Images are float in [0, 1].
    """
    if not examples:
        raise ValueError("no registration examples to plot")
    n_rows = max(len(e["methods"]) for e in examples) + 1
    fig = Figure(figsize=(4.2 * len(examples), 2.2 * n_rows), layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(1, len(examples)))
    for subfig, example in zip(subfigs, examples):
        _dataset_block(subfig, example)
    legend = [line_entry(c, LABEL_NAMES.get(k, str(k))) for k, c in LABEL_COLOURS.items()]
    legend.append(line_entry("black", "fixed mask (on warped labels)", linestyle="dashed"))
    legend_below(fig, legend, columns=len(legend), fontsize=9)
    return save_figure(fig, out)


# ----------------------------------------------------------------------------- training curves


def _curve_panel(ax, runs: Mapping[str, list], colours: Mapping[str, str], title: str) -> None:
    draw_loss_curves(ax, runs, colours, "total", per="step", ylabel="total loss")
    ax.set_title(title)


def plot_training_curves(curves: Mapping[tuple, pd.DataFrame], out: str | Path) -> Path:
    """Total loss against step: one column per dataset, registration methods on top,
    the autoencoder (method ``"autoencoder"``) in a second row when present.

    Keys are ``(dataset, method)`` or ``(dataset, method, seed)``; the replicate
    seeds of a method share its colour, the first one drawn solid
    (:func:`medrepro.report.figures.draw_loss_curves`: train curves smoothed, a log y
    axis for a loss falling over decades; the NCC term makes the registration
    loss negative, in which case it stays linear).
    """
    if not curves:
        raise ValueError("no training curves to plot")
    grouped = group_runs(curves, by=lambda key: key[:2])
    n_seeds = max(len(frames) for frames in grouped.values())
    datasets = list(dict.fromkeys(d for d, _ in grouped))
    methods = list(dict.fromkeys(m for _, m in grouped))
    registration_methods = [m for m in methods if m != "autoencoder"]
    rows = [(kind, names) for kind, names in (("registration", registration_methods),
                                               ("autoencoder", [m for m in methods if m == "autoencoder"])) if names]
    colours = assign_colours(methods)
    fig = Figure(figsize=(4.5 * len(datasets), 3.4 * len(rows)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(rows), len(datasets), squeeze=False))
    for col, dataset in enumerate(datasets):
        for row, (kind, names) in enumerate(rows):
            runs = {m: grouped[(dataset, m)] for m in names if (dataset, m) in grouped}
            _curve_panel(axes[row, col], runs, colours, f"{dataset}: {kind}")
    handles = [line_entry(colours[m], display_method(m)) for m in methods] + split_entries()
    legend_below(fig, handles, columns=8)
    seeds_note = f" ({n_seeds} seeds each; the first solid)" if n_seeds > 1 else ""
    fig.suptitle(f"Training curves{seeds_note}")
    return save_figure(fig, out)


# ----------------------------------------------------------------------------- Dice distributions


def plot_dice_distributions(
    per_pair: pd.DataFrame, out: str | Path, methods_order: Sequence[str], datasets_order: Sequence[str]
) -> Path:
    """Box plots of the per-pair mean Dice per method, one panel per dataset, pairs as dots."""
    datasets = order_with_extras(per_pair["dataset"].unique().tolist(), datasets_order)
    if not datasets:
        raise ValueError("no per-pair scores to plot")
    fig = Figure(figsize=(4.8 * len(datasets), 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(datasets), sharey=True, squeeze=False)[0])
    jitter = np.random.default_rng(0)
    for ax, dataset in zip(axes, datasets):
        block = per_pair[per_pair["dataset"] == dataset]
        methods = order_with_extras(block["method"].unique().tolist(), methods_order)
        groups = {display_method(m): block.loc[block["method"] == m, "dsc"].to_numpy() for m in methods}
        # The panels share their y axis: the first one's label names it for all.
        draw_box_plots(ax, groups, "Dice (mean over classes per pair)" if ax is axes[0] else "", jitter)
        ax.set_title(f"{dataset} (n = {block[['moving', 'fixed']].drop_duplicates().shape[0]} pairs)")
    fig.suptitle("Distribution of per-pair Dice")
    return save_figure(fig, out)
