"""The study's figures, composed from the kernel's figure helpers (:mod:`medrepro.report.figures`).

Examples are chosen by rule, never by hand: the stand-in's first case of each kind; the test mammograms with the
largest annotated area; the positive test patches the x0.5 classifier is most sure of.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from medrepro.errors import DataError
from medrepro.metrics.classification import roc_auc, roc_curve
from medrepro.report.figures import (
    assign_colours, draw_heatmap, draw_loss_curves, draw_mask_contour, draw_roc, group_runs, legend_below,
    line_entry, save_figure, show_image, split_entries,
)
from medrepro.studies.mammo_tissue.readers import ddsm

OD_RANGE = (0.05, 3.6)


def local_range(density: np.ndarray) -> tuple[float, float]:
    """The 1st to 99th percentile of a patch or zoom: its tissue covers a small part of the film's range, and its
    fine detail would be invisible on that range."""
    low, high = np.percentile(np.asarray(density), [1, 99])
    return (float(low), float(high)) if high > low else OD_RANGE


def show_density(ax, density: np.ndarray, title: str | None = None, window: tuple[float, float] = OD_RANGE):
    """Optical density as a mammogram is viewed: dense (low density on film) bright, over ``window`` (whole views:
    the film's range; patches and zooms: :func:`local_range`)."""
    density = np.asarray(density)
    low, high = window
    show_image(ax, -density, vmin=-high, vmax=-low)
    if title:
        ax.set_title(title, fontsize=8)


# ----------------------------------------------------------------------------- the stand-in
def plot_synthetic(raw_root: str | Path, out: str | Path, examples: int, constants: str, clip) -> Path:
    """Examples of the synthetic DDSM: each case's four views with their outlines (BOUNDARY red, CORE yellow),
    then a finding at native resolution, x0.5 and x0.25, where the fine detail fades."""
    from medrepro.studies.mammo_tissue.preprocess import downsample

    cases = [ddsm.read_case(folder) for folder in ddsm.case_folders(raw_root)]
    chosen, seen = [], set()
    for views in cases:  # the first case of each type
        if views[0].case_type not in seen:
            seen.add(views[0].case_type)
            chosen.append(views)
    chosen = chosen[:examples]
    fig = Figure(figsize=(13, 3.1 * len(chosen)), layout="constrained")
    grid = fig.subplots(len(chosen), 7, squeeze=False)
    for row, views in zip(grid, chosen):
        finding = None
        for ax, view in zip(row[:4], views):
            density, abnormalities = ddsm.read_view(view, constants, tuple(clip))
            show_density(ax, density, f"{view.case} {view.name}\n{view.case_type}\n{view.digitizer}")
            for abnormality in abnormalities:
                for outline in abnormality.outlines:
                    ax.plot(outline.points[:, 0] + 0.5, outline.points[:, 1] + 0.5, linewidth=0.8,
                            color="red" if outline.kind == "BOUNDARY" else "yellow")
                finding = finding or (density, abnormality)
        for ax, factor in zip(row[4:], (1, 2, 4)):
            if finding is None:
                ax.axis("off")
                continue
            density, abnormality = finding
            (cx, cy), half = abnormality.boundary.points.mean(axis=0).astype(int), 64
            window = density[max(cy - half, 0):cy + half, max(cx - half, 0):cx + half]
            shown = downsample(window, max(window.shape[0] // factor, 1)) if factor > 1 and \
                window.shape[0] == window.shape[1] else window[::factor, ::factor]
            show_density(ax, shown, f"finding {abnormality.number}, " + ("native" if factor == 1 else f"x1/{factor}"),
                         local_range(window))  # the native zoom's range for all three, so they compare
    fig.suptitle("Synthetic DDSM: views with their annotation outlines, and a finding at three scales")
    return save_figure(fig, out)


# ----------------------------------------------------------------------------- Fig. 3
def plot_roc(predictions: pd.DataFrame, out: str | Path) -> Path:
    """Fig. 3: the ROC on the test patches of each magnification's classifier, each seed one curve."""
    magnifications = sorted(predictions["magnification"].unique(), key=lambda m: -float(m[1:]))
    colours = assign_colours(magnifications)
    fig = Figure(figsize=(4.2 * len(magnifications), 4.4), layout="constrained")
    for ax, magnification in zip(fig.subplots(1, len(magnifications), squeeze=False)[0], magnifications):
        runs = predictions[predictions["magnification"] == magnification]
        curves, aucs = [], []
        for _, run in runs.groupby("seed"):
            fpr, tpr, _ = roc_curve(run["label"], run["probability"])
            curves.append((fpr, tpr))
            aucs.append(roc_auc(run["label"], run["probability"]))
        draw_roc(ax, curves, colours[magnification], magnification)
        ax.set_title(f"{magnification}: AUC {np.mean(aucs):.3f} ({len(aucs)} seed{'s' if len(aucs) > 1 else ''})")
    fig.suptitle("ROC of the tissue classifiers on the held-out patches")
    return save_figure(fig, out)


# ----------------------------------------------------------------------------- Fig. 1
def plot_aggregation(image: np.ndarray, local: np.ndarray, region: np.ndarray, out: str | Path,
                     title: str) -> Path:
    """Fig. 1: a test mammogram at x0.5 with the x0.5 classifier's local results on the 32 x 32 grid."""
    fig = Figure(figsize=(9, 4.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    show_density(left, image, "mammogram (x0.5) and its annotation")
    draw_mask_contour(left, region, "red", linewidths=0.8)
    show_density(right, image, "local results")
    scale = image.shape[0] / local.shape[0]
    shown = np.kron(local, np.ones((int(round(scale)), int(round(scale)))))[:image.shape[0], :image.shape[1]]
    draw_heatmap(right, shown, "P(findings present)", vmin=0, vmax=1)
    draw_mask_contour(right, region, "cyan", linewidths=0.8)
    fig.suptitle(title)
    return save_figure(fig, out)


# ----------------------------------------------------------------------------- Fig. 4
def plot_heatmaps(inputs: np.ndarray, targets: np.ndarray, predicted: Mapping[str, np.ndarray], names: list[str],
                  out: str | Path) -> Path:
    """Fig. 4: held-out mammograms, their blurred annotation targets and each model's predicted heatmap, all on
    one colour scale, so a model that predicts little shows dark; each panel's title gives its maximum."""
    n = len(inputs)
    fig = Figure(figsize=(3.0 * (2 + len(predicted)) + 0.8, 3.0 * n), layout="constrained")
    grid = fig.subplots(n, 2 + len(predicted), squeeze=False)
    top = max(float(targets.max()), *(float(p.max()) for p in predicted.values()), 1e-6)
    shown = None
    for row, k in zip(grid, range(n)):
        show_density(row[0], inputs[k], names[k])
        shown = show_image(row[1], targets[k], cmap="inferno", vmin=0, vmax=top)
        row[1].set_title(f"target (blurred annotation), max {targets[k].max():.2f}", fontsize=8)
        for ax, (model, maps) in zip(row[2:], predicted.items()):
            show_image(ax, np.clip(maps[k], 0, None), cmap="inferno", vmin=0, vmax=top)
            ax.set_title(f"{model}, max {maps[k].max():.2f}", fontsize=8)
    if shown is not None:
        fig.colorbar(shown, ax=grid[:, 1:], shrink=0.6, label="share of the cell in a target region")
    fig.suptitle("Heatmap regression on held-out mammograms (32 x 32)")
    return save_figure(fig, out)


# ----------------------------------------------------------------------------- Figs. 5 and 6
def plot_saliency(patches: np.ndarray, gradients: np.ndarray, probabilities: np.ndarray, image: np.ndarray,
                  saliency: np.ndarray, region: np.ndarray, out: str | Path, title: str) -> Path:
    """Fig. 5: positive test patches and their saliency; Fig. 6: a mammogram's full-scale saliency against its
    annotation."""
    n = len(patches)
    fig = Figure(figsize=(2.2 * max(n, 3), 2.2 * 2 + 4.4), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[2, 2.2])
    axes = top.subplots(2, max(n, 1), squeeze=False)
    for k in range(n):
        show_density(axes[0, k], patches[k], f"P = {probabilities[k]:.2f}", local_range(patches[k]))
        show_image(axes[1, k], gradients[k], cmap="inferno", vmin=0, vmax=float(gradients[k].max()) or 1.0)
    for k in range(n, axes.shape[1]):
        axes[0, k].axis("off")
        axes[1, k].axis("off")
    top.suptitle("Held-out positive tissue samples (x0.5) and |gradient| of the cross-entropy with the predicted "
                 "label", fontsize=9)
    left, right = bottom.subplots(1, 2)
    show_density(left, image, "mammogram (x0.5) and its annotation")
    draw_mask_contour(left, region, "red", linewidths=0.8)
    show_density(right, image, "full-scale saliency")
    if saliency.max() > 0:
        draw_heatmap(right, np.where(saliency > 0, saliency, np.nan), "saliency", vmin=0,
                     vmax=float(np.percentile(saliency[saliency > 0], 99)))
    draw_mask_contour(right, region, "cyan", linewidths=0.8)
    bottom.suptitle(title, fontsize=9)
    return save_figure(fig, out)


# ----------------------------------------------------------------------------- training
def plot_training_curves(logs: Mapping[tuple, pd.DataFrame], out: str | Path) -> Path:
    """The classifiers' cross-entropy and the heatmap models' MSE over training, training solid, validation
    dashed; each seed thin, their mean thick."""
    if not logs:
        raise DataError(None, "no training loss log to plot; run the training steps first")
    runs = group_runs(logs, by=lambda key: str(key[0]))
    classifiers = [m for m in runs if m.startswith("classifier")]
    heatmaps = [m for m in runs if m.startswith("heatmap")]
    colours = assign_colours(list(runs))
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    for ax, names, label in zip(fig.subplots(1, 2), (classifiers, heatmaps), ("cross-entropy", "MSE")):
        draw_loss_curves(ax, {m: runs[m] for m in names}, colours, "total", per="step", seed_mean=True,
                         ylabel=label)
        ax.set_title(f"{'tissue classifiers' if names is classifiers else 'heatmap models'}: {label}")
    legend_below(fig, [line_entry(colours[m], m) for m in runs] + split_entries(), columns=4)
    return save_figure(fig, out)
