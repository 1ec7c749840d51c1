"""The study's figures: the overlap mask (Fig. 2), training curves (Fig. 3), the GIoU-loss histogram
(Fig. 4), registration examples (Fig. 5) and a look at the synthetic stand-in pairs.

Conventions. Images are (H, W) floats in [0, 1] drawn on the pixel-edge
coordinates of :mod:`medrepro.report.figures`, so a box ``(x1, y1, x2, y2)`` of
:mod:`medrepro.spatial.boxes` is drawn at exactly those numbers. A method's matrices
are the (N, 2, 3) pixel affines of :mod:`medrepro.spatial.warp` (MLO output position
-> CC input position), one per test pair in the order of ``pairs``; what they
make of a pair (the registered CC, the overlap mask, the carried and
rectified CC box) is what the evaluation scores:
:func:`.evaluation.register_pairs`.

Every choice of what to show follows a stated rule (never a hand pick), and
nothing random is drawn, so the same inputs give the same PNG bytes. Each
function writes one PNG through :func:`medrepro.report.figures.save_figure` and
returns its path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from medrepro.spatial import boxes, warp
from medrepro.errors import DataError
from medrepro.report.figures import (
    Histogram, assign_colours, draw_box, draw_histograms, draw_loss_curves, draw_mask_contour, draw_quadrilateral,
    draw_tint, fit_view, group_runs, legend_below, line_entry, panel_height, patch_entry, save_figure,
    show_composite, show_image, split_entries,
)
from medrepro.studies.mammo_registration import evaluation, tables
from medrepro.report.tables import order_with_extras, require_columns

METHOD_COLOURS = {
    "unregistered": "#7f7f7f", "prior": "#bcbd22", "elastix": "#9467bd",
    "mse": "#1f77b4", "masked_mse": "#ff7f0e", "masked_mse_giou": "#2ca02c",
}
EXTRA_COLOURS = ("#d62728", "#8c564b", "#e377c2", "#17becf")  # for methods METHOD_COLOURS does not list
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
REGISTRATION_ARRAYS = (*PAIR_ARRAYS, "cc_region", "mlo_region")  # what registering a pair reads


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


def method_colours(methods: Sequence[str]) -> dict[str, str]:
    """Method -> colour: fixed for the study's methods, the extra colours in turn for any other."""
    return assign_colours(methods, METHOD_COLOURS, EXTRA_COLOURS)


# ----------------------------------------------------------------------------- geometry


def registered_pair(pairs: Mapping[str, np.ndarray], index: int, matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Pair ``index`` under one matrix, as the evaluation scores it: registered ``cc``, ``mask``, ``cc_box``."""
    result = evaluation.register_pairs(pairs, np.asarray(matrix, dtype=np.float64)[None], slice(index, index + 1))
    return {name: value[0] for name, value in result.items()}


def carried_cc_corners(matrix: np.ndarray, cc_box: np.ndarray) -> np.ndarray:
    """The CC box's four corners (4, 2) = (x, y) on the MLO grid before rectification, in polygon order."""
    inverse = warp.invert_affine(torch.as_tensor(np.asarray(matrix, dtype=np.float64)))
    return boxes.transform_points(inverse.numpy(), boxes.box_corners(np.asarray(cc_box, dtype=np.float64)))


# ----------------------------------------------------------------------------- titles


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


def _boxed_view(ax, image: np.ndarray, box: np.ndarray, colour: str) -> None:
    """An image with a box, zoomed out as far as needed to show the box."""
    show_image(ax, image)
    draw_box(ax, box, colour)
    fit_view(ax, image.shape, boxes.box_corners(box))


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
    (:func:`.evaluation.register_pairs`) shaded blue; (c) the MLO (magenta), the
    registered CC (green) and the mask's outline (cyan) superimposed, where
    equal intensities in both views read as grey. Boxes are rectified.

    ``index`` picks the pair (position in ``pairs``); by default the first
    pair by name (:func:`default_pair_index`).
    """
    n = _check_pairs(pairs, REGISTRATION_ARRAYS)
    index = default_pair_index(pairs["pair"]) if index is None else int(index)
    if not 0 <= index < n:
        raise DataError(None, f"pair index {index} is outside the {n} test pairs")
    before = _before_method(matrices)
    start = registered_pair(pairs, index, _method_matrices(matrices, before, n)[index])
    final = registered_pair(pairs, index, _method_matrices(matrices, method, n)[index])

    fig = Figure(figsize=(10, 4.4), layout="constrained")
    ax_before, ax_after, ax_both = fig.subplots(1, 3)
    _boxed_view(ax_before, start["cc"], start["cc_box"], BEFORE_BOX_COLOUR)
    ax_before.set_title(f"(a) CC, {tables.display_method(before).lower()}", fontsize=10)
    _boxed_view(ax_after, final["cc"], final["cc_box"], AFTER_BOX_COLOUR)
    draw_tint(ax_after, final["mask"], MASK_COLOUR, alpha=0.4)
    ax_after.set_title(f"(b) CC registered ({tables.display_method(method)})\n"
                       f"overlap mask: {int(final['mask'].sum())} px", fontsize=10)
    mlo = np.asarray(pairs["mlo"][index])
    show_composite(ax_both, mlo, final["cc"])
    draw_mask_contour(ax_both, final["mask"], MASK_CONTOUR_COLOUR, linewidths=1.0)
    fit_view(ax_both, mlo.shape)
    ax_both.set_title("(c) registered CC, MLO and mask", fontsize=10)

    legend_below(fig, [
        line_entry(BEFORE_BOX_COLOUR, "CC lesion box, before registration"),
        line_entry(AFTER_BOX_COLOUR, "CC lesion box, registered"),
        patch_entry(MASK_COLOUR, "overlap mask M (in the masked MSE)", alpha=0.4),
        patch_entry("magenta", "MLO (fixed)"),
        patch_entry("lime", "registered CC (moving)"),
        line_entry(MASK_CONTOUR_COLOUR, "outline of M"),
    ], columns=3)
    fig.suptitle(f"Overlap mask of the masked MSE, test pair {pairs['pair'][index]}")
    return save_figure(fig, out)


# ----------------------------------------------------------------------------- Fig. 3


def plot_training_curves(loss_logs: Mapping[tuple, pd.DataFrame], out: str | Path) -> Path:
    """Fig. 3: (a) the MSE term and (b) the GIoU loss over epochs, training solid, validation dashed.

    ``loss_logs`` maps ``(method, seed)`` to a loss log (columns step, epoch,
    split, total, mse, giou_loss). Training rows are averaged per epoch,
    validation rows too (usually one per epoch); one colour per method, each
    seed a thin line and, with several seeds, their mean a thick one
    (:func:`medrepro.report.figures.draw_loss_curves`). A term a method does not log
    (all values missing) is left out of its panel.
    """
    if not loss_logs:
        raise DataError(None, "no training loss log to plot; run the training steps first")
    runs = group_runs(loss_logs, by=lambda key: str(key[0]))
    methods = order_with_extras(list(runs), tables.METHOD_ORDER)
    runs = {method: runs[method] for method in methods}
    colours = method_colours(methods)
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    for ax, (column, title) in zip(fig.subplots(1, 2), LOSS_PANELS):
        draw_loss_curves(ax, runs, colours, column, per="epoch", seed_mean=True, ylabel=title.split(" ", 1)[1])
        ax.set_title(title)
    seeds = {method: len(logs) for method, logs in runs.items()}
    handles = [line_entry(colours[m], f"{tables.display_method(m)} ({seeds[m]} seed{'s' if seeds[m] > 1 else ''})")
               for m in methods]
    legend_below(fig, handles + split_entries(), columns=5)
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
    colours = method_colours(methods)
    series = [Histogram(_histogram_label(m, scores[m]), pd.to_numeric(scores[m]["giou_loss"]).to_numpy(dtype=float),
                        colours[m], weights=np.full(len(scores[m]), 1.0 / _seed_count(scores[m])),
                        filled=m == paper_method)
              for m in methods]
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax = fig.subplots()
    draw_histograms(ax, series, GIOU_BINS, xlabel="GIoU loss = 1 - GIoU (registered CC box against MLO box)",
                    ylabel="test pairs (per seed, for pooled seeds)")
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1.0, label="GIoU loss = 1 (left of it: boxes overlap)")
    ax.set_xlim(0.0, 2.0)
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
    registered = registered_pair(pairs, index, matrix)
    show_image(ax, mlo)
    draw_tint(ax, registered["cc"], CC_OVERLAY_COLOUR, alpha=0.5)
    corners = carried_cc_corners(matrix, pairs["cc_box"][index])
    draw_quadrilateral(ax, corners, CC_BOX_COLOUR, linewidth=1.3)
    draw_box(ax, registered["cc_box"], CC_BOX_COLOUR, linestyle="--", linewidth=1.1)
    mlo_box = np.asarray(pairs["mlo_box"][index], dtype=np.float64)
    draw_box(ax, mlo_box, MLO_BOX_COLOUR)
    fit_view(ax, mlo.shape, np.concatenate([corners, boxes.box_corners(mlo_box)]))
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
    n = _check_pairs(pairs, REGISTRATION_ARRAYS)
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
    fig = Figure(figsize=(panel_width * n_columns, panel_height(pairs["mlo"].shape[1:], 0.85 * panel_width) + 1.5),
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
    legend_below(fig, [
        patch_entry(CC_OVERLAY_COLOUR, "registered CC", alpha=0.5),
        line_entry(MLO_BOX_COLOUR, "MLO lesion box"),
        line_entry(CC_BOX_COLOUR, "CC lesion box, before rectification"),
        line_entry(CC_BOX_COLOUR, "CC lesion box, rectified", linestyle="--"),
    ], columns=4)
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
    row_height = panel_height(pairs["mlo"].shape[1:], 1.1) + 0.9
    fig = Figure(figsize=(2.6 * n_columns, row_height * n_rows + 0.4), layout="constrained")
    subfigs = np.atleast_2d(fig.subfigures(n_rows, n_columns, squeeze=False))
    for slot, subfig in enumerate(subfigs.ravel()):
        if slot >= len(chosen):
            continue
        index = int(chosen[slot])
        for ax, view in zip(subfig.subplots(1, 2), ("cc", "mlo")):
            show_image(ax, np.asarray(pairs[view][index]))
            draw_box(ax, pairs[f"{view}_box"][index], LESION_BOX_COLOUR, linewidth=1.2)
            ax.set_title(view.upper(), fontsize=8)
        split = f"\n{pairs['split'][index]} split" if "split" in pairs else ""
        subfig.suptitle(wrap_name(pairs["pair"][index], width=36) + split, fontsize=8)
    fig.suptitle(f"Synthetic CC/MLO pairs: the first {len(chosen)} by name, lesion boxes in yellow")
    return save_figure(fig, out)
