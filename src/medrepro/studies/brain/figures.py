"""The study's figures: the stand-in, registration examples, Jacobian maps, landmark errors, training curves.

Slices are axial (along z, the volume's first array axis) and coronal (along y, shown with z upwards), through the
example case's landmark-richest slice. Landmarks within two voxels of a slice are drawn on it: the baseline's
(fixed) as circles, the follow-up's before registration as crosses and after it (carried into baseline space) as
pluses.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from medrepro.nn.training.loop import read_loss_log  # noqa: E402
from medrepro.report.figures import (  # noqa: E402
    assign_colours, draw_box_plots, draw_loss_curves, draw_points, legend_below, line_entry, marker_entry,
    points_in_slice, save_figure, show_image, volume_slice,
)
from medrepro.studies.brain.tables import METHOD_NAMES, METHODS  # noqa: E402

DEPTH = 2.0
COLOURS = {"fixed": "#2ca02c", "before": "#d62728", "after": "#1f77b4"}
VIEWS = (("axial", 0), ("coronal", 1))


def _display(image: np.ndarray, axis: int) -> np.ndarray:
    return image[::-1] if axis == 1 else image  # coronal: z upwards


def _busiest_slice(points: np.ndarray, axis: int, size: int) -> int:
    """The slice along array ``axis`` holding the most landmarks (the middle one when none)."""
    finite = points[np.isfinite(points).all(axis=1)]
    if not len(finite):
        return size // 2
    coordinate = np.clip(np.rint(finite[:, 2 - axis]).astype(int), 0, size - 1)
    return int(np.bincount(coordinate, minlength=size).argmax())


def _draw_landmarks(ax, points, axis, index, height, colour, marker, label=None):
    shown, _ = points_in_slice(points, axis, index, DEPTH)
    if axis == 1:
        shown = np.column_stack([shown[:, 0], height - 1 - shown[:, 1]])
    draw_points(ax, shown, colour, label=label, marker=marker, size=30)


def _scaled(volume: np.ndarray) -> np.ndarray:
    high = np.percentile(volume[volume > 0], 99.5) if (volume > 0).any() else 1.0
    return np.clip(volume / max(high, 1e-6), 0, 1)


def plot_synthetic(raw_dir: str | Path, out: str | Path) -> Path:
    """A stand-in case's baseline and follow-up (T1ce, FLAIR), axial and coronal, with the landmarks."""
    from medrepro.data.io.nifti import read_volume
    from medrepro.studies.brain.readers import brats_reg

    case = next(c for c in brats_reg.index_cases(raw_dir) if c.has_baseline_landmarks)
    shape, geometry = brats_reg.check_pair_grids(case)
    _, base = brats_reg.landmarks_in_voxels(case.baseline_landmarks, geometry, shape)
    _, follow = brats_reg.landmarks_in_voxels(case.followup_landmarks, geometry, shape)
    rows = [(f"{scan} {modality}", read_volume((case.baseline if scan == "baseline" else case.followup)[modality])[0],
             base if scan == "baseline" else follow, COLOURS["fixed"] if scan == "baseline" else COLOURS["before"])
            for scan in ("baseline", "follow-up") for modality in ("t1ce", "flair")]
    fig, axes = plt.subplots(len(rows), 2, figsize=(7, 2.6 * len(rows)), layout="constrained")
    for r, (title, volume, points, colour) in enumerate(rows):
        for c, (view, axis) in enumerate(VIEWS):
            index = _busiest_slice(base, axis, volume.shape[axis])
            image = _display(volume_slice(_scaled(volume), axis, index), axis)
            show_image(axes[r, c], image)
            _draw_landmarks(axes[r, c], points, axis, index, image.shape[0], colour, "o")
            axes[r, c].set_title(f"{title}, {view} slice {index}", fontsize=8)
    legend_below(fig, [marker_entry(COLOURS["fixed"], "baseline landmarks"),
                       marker_entry(COLOURS["before"], "follow-up landmarks")], 2)
    fig.suptitle(f"{case.name}: baseline with tumour, follow-up after resection")
    return save_figure(fig, out)


def _example(path) -> dict:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def _ordered(examples: dict) -> list[str]:
    return [m for m in METHODS if m in examples] + sorted(set(examples) - set(METHODS))


def plot_examples(examples: dict, out: str | Path) -> Path:
    """Per method a row: fixed, moving, warped, |fixed - moving|, |fixed - warped|, axial then coronal."""
    methods = _ordered(examples)
    first = _example(examples[methods[0]])
    columns = ["fixed", "moving", "warped", "|fixed - moving|", "|fixed - warped|"]
    fig, axes = plt.subplots(2 * len(methods), len(columns), figsize=(2.1 * len(columns), 1.9 * 2 * len(methods)), layout="constrained")
    for m, method in enumerate(methods):
        data = _example(examples[method])
        fixed, moving, warped = (_scaled(data[k]) for k in ("fixed", "moving", "warped"))
        for v, (view, axis) in enumerate(VIEWS):
            index = _busiest_slice(data["fixed_landmarks"], axis, fixed.shape[axis])
            images = [fixed, moving, warped, np.abs(fixed - moving), np.abs(fixed - warped)]
            row = axes[2 * m + v]
            for c, volume in enumerate(images):
                image = _display(volume_slice(volume, axis, index), axis)
                show_image(row[c], image, vmax=1.0 if c < 3 else 0.5)
                if c in (0, 2):
                    _draw_landmarks(row[c], data["fixed_landmarks"], axis, index, image.shape[0], COLOURS["fixed"], "o")
                if c == 1:
                    _draw_landmarks(row[c], data["moving_landmarks"], axis, index, image.shape[0], COLOURS["before"],
                                    "x")
                if c == 2:
                    _draw_landmarks(row[c], data["carried_landmarks"], axis, index, image.shape[0],
                                    COLOURS["after"], "+")
                if m == 0 and v == 0:
                    row[c].set_title(columns[c], fontsize=9)
            row[0].set_ylabel(f"{METHOD_NAMES.get(method, method)}\n{view} {index}", fontsize=8)
    legend_below(fig, [marker_entry(COLOURS["fixed"], "baseline landmarks"),
                       marker_entry(COLOURS["before"], "follow-up landmarks", marker="x"),
                       marker_entry(COLOURS["after"], "follow-up landmarks after registration", marker="+")], 3)
    fig.suptitle(f"Registration of {str(first['case'])}: follow-up (moving) to baseline (fixed)")
    return save_figure(fig, out)


def plot_jacobians(examples: dict, out: str | Path) -> Path:
    """Per method the Jacobian determinant of its field on the example's axial and coronal slices; folding red."""
    methods = _ordered(examples)
    fig, axes = plt.subplots(len(VIEWS), len(methods), figsize=(2.6 * len(methods), 5.4), squeeze=False, layout="constrained")
    mappable = None
    for c, method in enumerate(methods):
        data = _example(examples[method])
        det = data["jacobian"]
        for r, (view, axis) in enumerate(VIEWS):
            index = _busiest_slice(data["fixed_landmarks"], axis, det.shape[axis])
            image = _display(volume_slice(det, axis, index), axis)
            mappable = axes[r, c].imshow(image, cmap="RdBu_r", vmin=0.0, vmax=2.0, interpolation="nearest")
            folded = np.ma.masked_where(image > 0, np.ones_like(image))
            axes[r, c].imshow(folded, cmap="autumn", vmin=0, vmax=1, interpolation="nearest")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            axes[r, c].set_title(f"{METHOD_NAMES.get(method, method)}\n{view} {index}, "
                                 f"{100 * (det <= 0).mean():.2f}% folded", fontsize=8)
    fig.colorbar(mappable, ax=axes, shrink=0.7, label="Jacobian determinant (1: volume kept)")
    return save_figure(fig, out)


def plot_error_boxes(errors: dict, out: str | Path) -> Path:
    """Landmark errors after registration per method (all seeds' landmarks), the errors before as the first box."""
    methods = _ordered(errors)
    frames = {m: pd.read_csv(errors[m]) for m in methods}
    groups = {"before registration": frames[methods[0]]["error_before_mm"].to_numpy()}
    groups.update({METHOD_NAMES.get(m, m): frames[m]["error_after_mm"].to_numpy() for m in methods
                   if m != "unregistered"})
    fig, ax = plt.subplots(figsize=(1.3 * len(groups) + 2, 4), layout="constrained")
    draw_box_plots(ax, groups, "landmark error (mm)", np.random.default_rng(0))
    ax.set_title("Landmark errors on the held-out cases (every seed)")
    return save_figure(fig, out)


def plot_training_curves(paths: list, out: str | Path) -> Path:
    """Training loss per step of each learned method and stage, every seed."""
    runs: dict = {}
    for path in sorted(map(str, paths)):
        name = Path(path).name.replace(".losses.csv", "")
        runs.setdefault(name, []).append(read_loss_log(path))
    colours = assign_colours(sorted(runs))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for ax, stage in zip(axes, ("pretrained", "")):
        chosen = {n: logs for n, logs in runs.items() if n.endswith("_pretrained") == bool(stage)}
        draw_loss_curves(ax, chosen, colours, ylabel="training loss (total)")
        ax.set_title("pre-training (scan to its affine copy)" if stage else "follow-up to baseline")
    legend_below(fig, [line_entry(colours[n], n.replace("_", " ")) for n in sorted(runs)], 3)
    return save_figure(fig, out)
