"""The study's figures: the overlap mask (Fig. 2), training curves (Fig. 3), the GIoU-loss histogram
(Fig. 4), registration examples (Fig. 5) and a look at the synthetic stand-in pairs.

Conventions. Images are (H, W) floats in [0, 1] drawn with the pixel-edge
coordinates of :mod:`medrepro.boxes`: every image is shown with the extent
``[0, W] x [H, 0]``, so pixel (row r, column c) fills ``[c, c + 1) x [r, r + 1)``
and a box ``(x1, y1, x2, y2)`` is drawn at exactly those numbers. A method's
matrices are the (N, 2, 3) pixel affines of :mod:`medrepro.warp` (MLO output
position -> CC input position), one per test pair in the order of ``pairs``;
the registered CC is ``affine_warp(cc, matrix, mlo_shape)`` and a CC box
reaches the MLO grid through the inverse affine (its four corners, then
rectified, as :func:`..networks.carry_cc_boxes` does).

Every choice of what to show follows a stated rule (never a hand pick), and
nothing random is drawn, so the same inputs give the same PNG bytes. Each
function writes one PNG through :func:`medrepro.figures.save_figure` and
returns its path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Polygon, Rectangle

from medrepro import boxes, warp
from medrepro.errors import DataError
from medrepro.figures import save_figure
from medrepro.studies.mammo_registration import networks, tables
from medrepro.tables import order_with_extras, require_columns

METHOD_COLOURS = {
    "unregistered": "#7f7f7f", "prior": "#bcbd22", "elastix": "#9467bd",
    "mse": "#1f77b4", "masked_mse": "#ff7f0e", "masked_mse_giou": "#2ca02c",
}
EXTRA_COLOURS = ("#d62728", "#8c564b", "#e377c2", "#17becf")  # for methods METHOD_COLOURS does not list
SPLIT_STYLE = {"train": "-", "val": "--"}
LOSS_PANELS = (("mse", "(a) MSE"), ("giou_loss", "(b) GIoU loss"))
BEFORE_METHODS = ("unregistered", "prior")  # Fig. 2(a) shows the first of these that is present
EXAMPLE_KINDS = ("success", "median", "failure")
KIND_TITLES = {"success": "lowest GIoU loss", "median": "median GIoU loss", "failure": "highest GIoU loss"}
GIOU_BINS = np.linspace(0.0, 2.0, 41)
MLO_BOX_COLOUR = "#d62728"
CC_BOX_COLOUR = "#1f77b4"
BEFORE_BOX_COLOUR = "#d62728"
AFTER_BOX_COLOUR = "#2ca02c"
MASK_COLOUR = (0.12, 0.47, 0.95)
MASK_CONTOUR_COLOUR = "#00e5ff"
CC_OVERLAY_COLOUR = (0.1, 0.85, 0.2)
LESION_BOX_COLOUR = "#ffd700"
PAIR_ARRAYS = ("cc", "mlo", "cc_box", "mlo_box", "pair")


# ----------------------------------------------------------------------------- inputs


def _check_pairs(pairs: Mapping[str, np.ndarray], needed: Sequence[str] = PAIR_ARRAYS) -> int:
    """The number of pairs, after checking that every needed array is there with one entry per pair."""
    missing = [name for name in needed if name not in pairs]
    if missing:
        raise DataError(None, f"the pairs lack the array(s) {missing}; pass the dict from preprocess.load_pairs")
    sizes = {name: len(pairs[name]) for name in needed}
    if len(set(sizes.values())) != 1:
        raise DataError(None, f"the pairs' arrays differ in length ({sizes}); reload them with load_pairs")
    n = next(iter(sizes.values()))
    if n == 0:
        raise DataError(None, "there is no pair to draw; check the split of the prepared pairs")
    return n


def _method_matrices(matrices: Mapping[str, object], method: str, n_pairs: int) -> np.ndarray:
    """A method's (N, 2, 3) float64 matrices, checked against the number of pairs."""
    if method not in matrices:
        raise DataError(None, f"no matrices for method {method!r} (have {sorted(matrices)}); "
                              "run its registration step first")
    value = matrices[method]
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    array = array.astype(np.float64)
    if array.shape != (n_pairs, 2, 3):
        raise DataError(None, f"method {method!r} has matrices of shape {array.shape}, expected "
                              f"({n_pairs}, 2, 3): one per test pair, in the pairs' order")
    return array


def method_colour(method: str, methods: Sequence[str] = ()) -> str:
    """A method's colour: fixed for the study's methods, the next free extra colour for any other."""
    if method in METHOD_COLOURS:
        return METHOD_COLOURS[method]
    extras = [m for m in methods if m not in METHOD_COLOURS]
    position = extras.index(method) if method in extras else 0
    return EXTRA_COLOURS[position % len(EXTRA_COLOURS)]


# ----------------------------------------------------------------------------- geometry


def _tensor(array) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array, dtype=np.float64))


def register_cc(cc: np.ndarray, matrix: np.ndarray, mlo_shape: tuple[int, int]) -> np.ndarray:
    """The CC (H, W) resampled onto the MLO grid (bilinear, outside reads 0), as float64 (H', W')."""
    image = _tensor(cc)[None, None]
    return warp.affine_warp(image, _tensor(matrix)[None], tuple(mlo_shape))[0, 0].numpy()


def overlap_for_pair(matrix: np.ndarray, cc_region: np.ndarray, mlo_region: np.ndarray) -> np.ndarray:
    """The masked MSE's overlap mask of one pair, bool (H', W') on the MLO grid.

    :func:`medrepro.warp.overlap_mask` with the CC's region carried by the
    matrix and kept inside the MLO's region: where the registered CC's breast
    and the MLO's breast meet.
    """
    cc_region = np.asarray(cc_region)
    mlo_region = np.asarray(mlo_region)
    mask = warp.overlap_mask(cc_region.shape, _tensor(matrix)[None], mlo_region.shape,
                             fixed_region=torch.as_tensor(mlo_region != 0),
                             moving_region=torch.as_tensor(cc_region != 0))
    return mask[0, 0].numpy()


def carried_cc_corners(matrix: np.ndarray, cc_box: np.ndarray) -> np.ndarray:
    """The CC box's four corners (4, 2) = (x, y) on the MLO grid before rectification, in polygon order."""
    inverse = warp.invert_affine(_tensor(matrix))
    return boxes.transform_points(inverse.numpy(), boxes.box_corners(np.asarray(cc_box, dtype=np.float64)))


def rectified_cc_box(matrix: np.ndarray, cc_box: np.ndarray) -> np.ndarray:
    """The CC box on the MLO grid after rectification (4,): what the evaluation scores."""
    carried = networks.carry_cc_boxes(_tensor(matrix)[None], _tensor(cc_box)[None])
    return carried[0].numpy()


# ----------------------------------------------------------------------------- drawing helpers


def wrap_name(name: str, width: int = 20) -> str:
    """A pair name broken after underscores into lines of about ``width`` characters, for narrow titles."""
    lines, current = [], ""
    for part in str(name).split("_"):
        piece = part if not current else "_" + part
        if current and len(current) + len(piece) > width:
            lines.append(current + "_")
            current = part
        else:
            current += piece
    return "\n".join(lines + [current])


def _panel_height(shape: tuple[int, int], panel_width: float) -> float:
    """Inches an image panel ``panel_width`` wide needs, for figures sized to the views' aspect."""
    height, width = shape
    return panel_width * height / width


def _show_view(ax, image: np.ndarray) -> None:
    """A grey view in [0, 1] on its pixel-edge extent, without ticks."""
    height, width = np.shape(image)
    ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest", extent=(0, width, height, 0))
    ax.set_xticks([])
    ax.set_yticks([])


def _overlay(ax, weight: np.ndarray, colour: tuple[float, float, float], alpha: float) -> None:
    """``colour`` over the axes with opacity ``alpha * weight`` (weight in [0, 1]) per pixel."""
    height, width = np.shape(weight)
    rgba = np.zeros((height, width, 4))
    rgba[..., :3] = colour
    rgba[..., 3] = alpha * np.clip(weight, 0.0, 1.0)
    ax.imshow(rgba, interpolation="nearest", extent=(0, width, height, 0))


def _draw_box(ax, box, colour: str, linestyle: str = "-", linewidth: float = 1.4) -> None:
    x1, y1, x2, y2 = (float(v) for v in box)
    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour,
                           linestyle=linestyle, linewidth=linewidth))


def _draw_mask_contour(ax, mask: np.ndarray, colour: str) -> None:
    """The mask's outline along pixel edges (pixel centres sit at half-integers on the edge extent)."""
    if not mask.any() or mask.all():
        return
    height, width = mask.shape
    ax.contour(np.arange(width) + 0.5, np.arange(height) + 0.5, mask.astype(float), levels=[0.5],
               colors=[colour], linewidths=1.0)


def _fit_limits(ax, shape: tuple[int, int], points: np.ndarray, reach: float = 1.0) -> None:
    """Show the whole image and every box point, but no further than ``reach`` image sizes beyond it."""
    height, width = shape
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    points = points[np.isfinite(points).all(axis=1)]
    xs = np.clip(np.concatenate([[0.0, width], points[:, 0]]), -reach * width, (1 + reach) * width)
    ys = np.clip(np.concatenate([[0.0, height], points[:, 1]]), -reach * height, (1 + reach) * height)
    pad_x, pad_y = 0.02 * width, 0.02 * height
    ax.set_xlim(xs.min() - pad_x if xs.min() < 0 else 0, xs.max() + pad_x if xs.max() > width else width)
    ax.set_ylim(ys.max() + pad_y if ys.max() > height else height, ys.min() - pad_y if ys.min() < 0 else 0)


# ----------------------------------------------------------------------------- Fig. 2


def default_pair_index(pair_names: Sequence[str]) -> int:
    """The pair Fig. 2 shows when none is asked for: the first by name (ties keep the stored order)."""
    names = np.asarray(pair_names).astype(str)
    if names.size == 0:
        raise DataError(None, "there is no pair to draw; check the split of the prepared pairs")
    return int(np.argsort(names, kind="stable")[0])


def _before_method(matrices: Mapping[str, object]) -> str:
    for method in BEFORE_METHODS:
        if method in matrices:
            return method
    raise DataError(None, f"Fig. 2(a) needs the matrices of one of {list(BEFORE_METHODS)}; have {sorted(matrices)}")


def plot_overlap_mask(
    pairs: Mapping[str, np.ndarray],
    matrices: Mapping[str, object],
    out: str | Path,
    index: int | None = None,
    method: str = tables.PAPER_METHOD,
) -> Path:
    """Fig. 2: how the masked MSE's overlap mask arises, for one test pair.

    (a) the CC on the MLO grid before registration (the ``unregistered``
    matrices, else the ``prior``'s) with its lesion box in red; (b) the CC
    registered by ``method`` with its box in green and the overlap mask
    (:func:`overlap_for_pair`) shaded blue; (c) the MLO (magenta), the
    registered CC (green) and the mask's outline (cyan) superimposed, where
    equal intensities in both views read as grey. Boxes are rectified.

    ``index`` picks the pair (position in ``pairs``); by default the first
    pair by name (:func:`default_pair_index`).
    """
    n = _check_pairs(pairs, (*PAIR_ARRAYS, "cc_region", "mlo_region"))
    index = default_pair_index(pairs["pair"]) if index is None else int(index)
    if not 0 <= index < n:
        raise DataError(None, f"pair index {index} is outside the {n} test pairs")
    before = _before_method(matrices)
    start = _method_matrices(matrices, before, n)[index]
    final = _method_matrices(matrices, method, n)[index]
    cc, mlo = np.asarray(pairs["cc"][index]), np.asarray(pairs["mlo"][index])
    cc_box = np.asarray(pairs["cc_box"][index])
    mask = overlap_for_pair(final, pairs["cc_region"][index], pairs["mlo_region"][index])
    registered = register_cc(cc, final, mlo.shape)

    fig = Figure(figsize=(10, 4.4), layout="constrained")
    ax_before, ax_after, ax_both = fig.subplots(1, 3)
    _show_view(ax_before, register_cc(cc, start, mlo.shape))
    start_box = rectified_cc_box(start, cc_box)
    _draw_box(ax_before, start_box, BEFORE_BOX_COLOUR)
    _fit_limits(ax_before, mlo.shape, boxes.box_corners(start_box))
    ax_before.set_title(f"(a) CC, {tables.display_method(before).lower()}", fontsize=10)

    _show_view(ax_after, registered)
    _overlay(ax_after, mask.astype(float), MASK_COLOUR, alpha=0.4)
    final_box = rectified_cc_box(final, cc_box)
    _draw_box(ax_after, final_box, AFTER_BOX_COLOUR)
    _fit_limits(ax_after, mlo.shape, boxes.box_corners(final_box))
    ax_after.set_title(f"(b) CC registered ({tables.display_method(method)})\n"
                       f"overlap mask: {int(mask.sum())} px", fontsize=10)

    height, width = mlo.shape
    composite = np.stack([np.clip(mlo, 0, 1), np.clip(registered, 0, 1), np.clip(mlo, 0, 1)], axis=-1)
    ax_both.imshow(composite, interpolation="nearest", extent=(0, width, height, 0))
    ax_both.set_xticks([])
    ax_both.set_yticks([])
    _draw_mask_contour(ax_both, mask, MASK_CONTOUR_COLOUR)
    _fit_limits(ax_both, mlo.shape, np.empty((0, 2)))
    ax_both.set_title("(c) registered CC, MLO and mask", fontsize=10)

    legend = [
        Line2D([], [], color=BEFORE_BOX_COLOUR, label="CC lesion box, before registration"),
        Line2D([], [], color=AFTER_BOX_COLOUR, label="CC lesion box, registered"),
        Patch(facecolor=MASK_COLOUR, alpha=0.4, label="overlap mask M (in the masked MSE)"),
        Patch(facecolor="magenta", label="MLO (fixed)"),
        Patch(facecolor="lime", label="registered CC (moving)"),
        Line2D([], [], color=MASK_CONTOUR_COLOUR, label="outline of M"),
    ]
    fig.legend(handles=legend, loc="outside lower center", ncol=3, fontsize=8)
    fig.suptitle(f"Overlap mask of the masked MSE, test pair {pairs['pair'][index]}")
    return save_figure(fig, out)


# ----------------------------------------------------------------------------- Fig. 3


def epoch_means(log: pd.DataFrame, column: str) -> dict[str, pd.Series]:
    """Split -> the mean of ``column`` per epoch (finite values only), indexed by epoch."""
    require_columns(log, ("epoch", "split"), "a training loss log")
    if column not in log.columns:
        return {}
    values = pd.to_numeric(log[column], errors="coerce")
    finite = log.assign(value=values)[np.isfinite(values.to_numpy(dtype=float))]
    return {str(split): rows.groupby("epoch", sort=True)["value"].mean()
            for split, rows in finite.groupby("split", sort=True)}


def _curve_panel(ax, loss_logs: Mapping[tuple, pd.DataFrame], methods: Sequence[str], column: str) -> None:
    """Every seed thin, the mean over seeds thick (when there are several), per method and split."""
    plotted = []
    for method in methods:
        colour = method_colour(method, methods)
        runs = [epoch_means(frame, column) for key, frame in loss_logs.items() if key[0] == method]
        for split, style in SPLIT_STYLE.items():
            curves = [run[split] for run in runs if split in run and len(run[split])]
            if not curves:
                continue
            for curve in curves:
                plotted.append(curve.to_numpy())
                ax.plot(curve.index, curve.to_numpy(), linestyle=style, color=colour,
                        linewidth=0.8 if len(curves) > 1 else 1.5, alpha=0.4 if len(curves) > 1 else 1.0,
                        marker="o" if len(curve) < 30 else None, markersize=2.5)
            if len(curves) > 1:
                mean = pd.concat(curves, axis=1).mean(axis=1)
                ax.plot(mean.index, mean.to_numpy(), linestyle=style, color=colour, linewidth=1.8)
    values = np.concatenate(plotted) if plotted else np.array([])
    if values.size and np.all(values > 0) and values.max() >= 10 * values.min():
        ax.set_yscale("log")  # a loss falling over decades reads better on a log axis
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3, which="both")


def plot_training_curves(loss_logs: Mapping[tuple, pd.DataFrame], out: str | Path) -> Path:
    """Fig. 3: (a) the MSE term and (b) the GIoU loss over epochs, training solid, validation dashed.

    ``loss_logs`` maps ``(method, seed)`` to a loss log (columns step, epoch,
    split, total, mse, giou_loss). Training rows are averaged per epoch,
    validation rows too (usually one per epoch); one colour per method, each
    seed a thin line and, with several seeds, their mean a thick one. A term a
    method does not log (all values missing) is left out of its panel. The y
    axis is logarithmic when the panel's values are positive and span a
    factor of ten or more.
    """
    if not loss_logs:
        raise DataError(None, "no training loss log to plot; run the training steps first")
    methods = order_with_extras(list(dict.fromkeys(str(key[0]) for key in loss_logs)), tables.METHOD_ORDER)
    logs = {(str(key[0]), *key[1:]): frame for key, frame in loss_logs.items()}
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    for ax, (column, title) in zip(fig.subplots(1, 2), LOSS_PANELS):
        _curve_panel(ax, logs, methods, column)
        ax.set_title(title)
        ax.set_ylabel(title.split(" ", 1)[1])
    seeds = {m: sum(1 for key in logs if key[0] == m) for m in methods}
    handles = [Line2D([], [], color=method_colour(m, methods),
                      label=f"{tables.display_method(m)} ({seeds[m]} seed{'s' if seeds[m] > 1 else ''})")
               for m in methods]
    handles += [Line2D([], [], color="black", linestyle=s, label=name)
                for name, s in (("training", SPLIT_STYLE["train"]), ("validation", SPLIT_STYLE["val"]))]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 5), fontsize=8)
    several = max(seeds.values()) > 1
    fig.suptitle("Evolution of the loss during training" + (" (thin: each seed; thick: mean over seeds)"
                                                             if several else ""))
    return save_figure(fig, out)


# ----------------------------------------------------------------------------- Fig. 4


def _seed_count(frame: pd.DataFrame) -> int:
    if "seed" not in frame.columns or frame["seed"].isna().all():
        return 1
    return int(frame["seed"].nunique(dropna=True))


def _histogram_label(method: str, frame: pd.DataFrame) -> str:
    n_seeds = _seed_count(frame)
    label = tables.display_method(method)
    details = [f"{n_seeds} seeds pooled"] if n_seeds > 1 else []
    if "overlap" in frame.columns:
        details.append(f"overlap {100 * float(pd.to_numeric(frame['overlap']).mean()):.1f}%")
    return label + (f" ({', '.join(details)})" if details else "")


def plot_giou_histogram(
    scores: Mapping[str, pd.DataFrame], out: str | Path, paper_method: str = tables.PAPER_METHOD
) -> Path:
    """Fig. 4: histogram of the per-pair GIoU loss on the test set, on [0, 2] in bins of 0.05.

    The paper's method is filled, the other methods are step outlines. A
    learned method's seeds are pooled, each pair-seed weighted by 1 / (number
    of seeds), so the bars count test pairs whatever the number of seeds. The
    dashed line at 1: a GIoU loss below it means the boxes overlap (GIoU > 0
    needs IoU > 0); overlapping boxes can still score above it when their
    enclosing box is large.
    """
    if not scores:
        raise DataError(None, "no per-pair scores to plot; run the evaluation step first")
    for method, frame in scores.items():
        require_columns(frame, ("pair", "giou_loss"), f"per-pair scores of method {method!r}")
    methods = order_with_extras(list(scores), tables.METHOD_ORDER)
    methods = [paper_method] + [m for m in methods if m != paper_method] if paper_method in methods else methods
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax = fig.subplots()
    for method in methods:
        frame = scores[method]
        values = np.clip(pd.to_numeric(frame["giou_loss"]).to_numpy(dtype=float), GIOU_BINS[0], GIOU_BINS[-1])
        weights = np.full(values.shape, 1.0 / _seed_count(frame))
        filled = method == paper_method
        ax.hist(values, bins=GIOU_BINS, weights=weights, histtype="stepfilled" if filled else "step",
                color=method_colour(method, methods), alpha=0.55 if filled else 1.0,
                linewidth=0.0 if filled else 1.4, label=_histogram_label(method, frame), zorder=1 if filled else 2)
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1.0, label="GIoU loss = 1 (left of it: boxes overlap)")
    ax.set_xlim(0.0, 2.0)
    ax.set_xlabel("GIoU loss = 1 - GIoU (registered CC box against MLO box)")
    ax.set_ylabel("test pairs (per seed, for pooled seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    n_pairs = scores[methods[0]]["pair"].nunique()
    ax.set_title(f"GIoU loss on the test set ({n_pairs} pairs)")
    return save_figure(fig, out)


# ----------------------------------------------------------------------------- Fig. 5


def example_indices(scores_frame: pd.DataFrame, per_kind: int) -> dict[str, list[int]]:
    """The rule behind Fig. 5: which rows of one seed's per-pair scores to show.

    Rows are ranked by GIoU loss, ties broken by pair name. ``success`` is the
    ``per_kind`` lowest ranks, ``failure`` the ``per_kind`` highest of the rest,
    ``median`` the ``per_kind`` (or fewer) of the remaining ranks centred on the
    median: ranks from ``(n - k) // 2`` on, with k the number taken, moved
    inside the remaining ranks. No row appears twice, so with fewer than
    ``3 * per_kind`` rows the median and then the failures come up short.
    Values are positions (``iloc``) in ``scores_frame``, each list in
    ascending GIoU loss.
    """
    if int(per_kind) < 1:
        raise ValueError(f"per_kind must be at least 1, got {per_kind}")
    require_columns(scores_frame, ("pair", "giou_loss"), "per-pair scores")
    if scores_frame["pair"].duplicated().any():
        raise DataError(None, "the per-pair scores repeat a pair; pass the scores of a single seed")
    ranked = pd.DataFrame({
        "position": np.arange(len(scores_frame)),
        "pair": scores_frame["pair"].astype(str).to_numpy(),
        "loss": pd.to_numeric(scores_frame["giou_loss"]).to_numpy(dtype=float),
    }).sort_values(["loss", "pair"], kind="mergesort")["position"].tolist()
    n, per_kind = len(ranked), int(per_kind)
    n_success = min(per_kind, n)
    n_failure = min(per_kind, n - n_success)
    n_median = min(per_kind, n - n_success - n_failure)
    start = min(max((n - n_median) // 2, n_success), n - n_failure - n_median)
    return {
        "success": ranked[:n_success],
        "median": ranked[start:start + n_median],
        "failure": ranked[n - n_failure:],
    }


def config_seed_scores(frame: pd.DataFrame, seed: int | None = None) -> tuple[pd.DataFrame, int | None]:
    """One seed's rows (``seed``, else the lowest seed; all rows when there is no seed) and that seed."""
    if "seed" not in frame.columns or frame["seed"].isna().all():
        return frame.reset_index(drop=True), None
    chosen = int(frame["seed"].min()) if seed is None else int(seed)
    rows = frame[frame["seed"] == chosen]
    if rows.empty:
        seeds = sorted(int(s) for s in frame["seed"].dropna().unique())
        raise DataError(None, f"no per-pair scores for seed {chosen} (seeds: {seeds}); pass one of those")
    return rows.reset_index(drop=True), chosen


def _example_panel(ax, pairs, index: int, matrix: np.ndarray, title: str) -> None:
    """Grey MLO, registered CC in green, MLO box red, CC box blue: carried corners solid, rectified dashed."""
    mlo = np.asarray(pairs["mlo"][index])
    _show_view(ax, mlo)
    _overlay(ax, register_cc(np.asarray(pairs["cc"][index]), matrix, mlo.shape), CC_OVERLAY_COLOUR, alpha=0.5)
    cc_box = np.asarray(pairs["cc_box"][index])
    corners = carried_cc_corners(matrix, cc_box)
    ax.add_patch(Polygon(corners, closed=True, fill=False, edgecolor=CC_BOX_COLOUR, linewidth=1.3))
    _draw_box(ax, rectified_cc_box(matrix, cc_box), CC_BOX_COLOUR, linestyle="--", linewidth=1.1)
    mlo_box = np.asarray(pairs["mlo_box"][index])
    _draw_box(ax, mlo_box, MLO_BOX_COLOUR)
    _fit_limits(ax, mlo.shape, np.concatenate([corners, boxes.box_corners(mlo_box.astype(float))]))
    ax.set_title(title, fontsize=8)


def plot_examples(
    pairs: Mapping[str, np.ndarray],
    matrices: Mapping[str, object],
    scores: Mapping[str, pd.DataFrame],
    out: str | Path,
    method: str = tables.PAPER_METHOD,
    per_kind: int = 2,
    seed: int | None = None,
) -> Path:
    """Fig. 5: registration examples chosen by rule, the MLO with the registered CC overlaid.

    The rule (:func:`example_indices`, also in the figure's title): of
    ``method``'s per-pair scores for ``seed`` (default the lowest seed, the
    configuration's; ``matrices[method]`` must come from the same run), the
    ``per_kind`` pairs with the lowest GIoU loss (successes), those around the
    median and those with the highest (failures). Each panel shows the grey
    MLO, the registered CC in green, the MLO lesion box in red and the CC
    lesion box in blue, carried by the inverse affine before rectification
    (solid quadrilateral) and after (dashed), titled with the pair and its
    GIoU loss from the scores.
    """
    n = _check_pairs(pairs)
    if method not in scores:
        raise DataError(None, f"no per-pair scores for method {method!r} (have {sorted(scores)})")
    chosen_matrices = _method_matrices(matrices, method, n)
    frame, used_seed = config_seed_scores(scores[method], seed)
    picks = {kind: rows for kind, rows in example_indices(frame, per_kind).items() if rows}
    position_of = {str(name): i for i, name in enumerate(pairs["pair"])}
    missing = sorted(set(frame["pair"].astype(str)) - set(position_of))
    if missing:
        raise DataError(None, f"scored pair(s) {missing[:3]} are not among the test pairs; "
                              "evaluate and plot the same prepared pairs")

    n_columns = sum(len(rows) for rows in picks.values())
    panel_width = max(6.0, 1.75 * n_columns) / n_columns
    fig = Figure(figsize=(panel_width * n_columns, _panel_height(pairs["mlo"].shape[1:], 0.85 * panel_width) + 1.5),
                 layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(1, len(picks), width_ratios=[len(r) for r in picks.values()]))
    for subfig, (kind, rows) in zip(subfigs, picks.items()):
        axes = np.atleast_1d(subfig.subplots(1, len(rows)))
        for ax, row in zip(axes, rows):
            pair = str(frame["pair"].iloc[row])
            loss = float(frame["giou_loss"].iloc[row])
            _example_panel(ax, pairs, position_of[pair], chosen_matrices[position_of[pair]],
                           f"{wrap_name(pair)}\nGIoU loss {loss:.3f}")
        subfig.suptitle(KIND_TITLES[kind], fontsize=10, fontweight="bold")
    legend = [
        Patch(facecolor=CC_OVERLAY_COLOUR, alpha=0.5, label="registered CC"),
        Line2D([], [], color=MLO_BOX_COLOUR, label="MLO lesion box"),
        Line2D([], [], color=CC_BOX_COLOUR, label="CC lesion box, before rectification"),
        Line2D([], [], color=CC_BOX_COLOUR, linestyle="--", label="CC lesion box, rectified"),
    ]
    fig.legend(handles=legend, loc="outside lower center", ncol=4, fontsize=8)
    seed_text = f", seed {used_seed}" if used_seed is not None else ""
    fig.suptitle(f"Registration examples, {tables.display_method(method)}{seed_text}: the {per_kind} test pairs "
                 "with the lowest, median and highest GIoU loss (ties by pair name)", fontsize=10)
    return save_figure(fig, out)


# ----------------------------------------------------------------------------- synthetic pairs


def plot_synthetic_pairs(pairs: Mapping[str, np.ndarray], out: str | Path, n: int = 4) -> Path:
    """The synthetic stand-in: the first ``n`` pairs by name, each CC beside its MLO with the lesion boxes (yellow).

    At most four pairs per row; each pair titled with its name (and split when known).
    """
    total = _check_pairs(pairs)
    if int(n) < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    chosen = np.argsort(np.asarray(pairs["pair"]).astype(str), kind="stable")[: min(int(n), total)]
    n_columns = min(len(chosen), 4)
    n_rows = -(-len(chosen) // n_columns)
    row_height = _panel_height(pairs["mlo"].shape[1:], 1.1) + 0.9
    fig = Figure(figsize=(2.6 * n_columns, row_height * n_rows + 0.4), layout="constrained")
    subfigs = np.atleast_2d(fig.subfigures(n_rows, n_columns, squeeze=False))
    for slot, subfig in enumerate(subfigs.ravel()):
        if slot >= len(chosen):
            continue
        index = int(chosen[slot])
        for ax, view in zip(subfig.subplots(1, 2), ("cc", "mlo")):
            _show_view(ax, np.asarray(pairs[view][index]))
            _draw_box(ax, pairs[f"{view}_box"][index], LESION_BOX_COLOUR, linewidth=1.2)
            ax.set_title(view.upper(), fontsize=8)
        split = f"\n{pairs['split'][index]} split" if "split" in pairs else ""
        subfig.suptitle(wrap_name(pairs["pair"][index], width=36) + split, fontsize=8)
    fig.suptitle(f"Synthetic CC/MLO pairs: the first {len(chosen)} by name, lesion boxes in yellow")
    return save_figure(fig, out)
