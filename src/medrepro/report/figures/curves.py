"""Loss curves from the training loop's loss logs (read by :func:`medrepro.nn.training.loop.read_loss_log`).

One colour per method, its replicate seeds drawn together, training rows
solid and validation rows dashed, against the step or the epoch.
"""

from __future__ import annotations

from typing import Callable, Hashable, Mapping, Sequence

import numpy as np
import pandas as pd

from medrepro.report.figures.style import line_entry
from medrepro.report.tables import require_columns

SPLIT_STYLES = {"train": "-", "val": "--"}
SPLIT_NAMES = {"train": "training", "val": "validation"}
SMOOTHING_POINTS = 50  # a running mean over about 1/50 of a curve keeps noisy batch losses readable
MARKED_POINTS = 30  # a sparse curve (validation rows, epoch means) with fewer points gets markers, to stay visible
SOLID = {"linewidth": 1.5, "alpha": 1.0}
FAINT = {"linewidth": 0.8, "alpha": 0.4}
MEAN = {"linewidth": 1.8, "alpha": 1.0}


def running_mean(values: np.ndarray, n_points: int = SMOOTHING_POINTS) -> np.ndarray:
    """The mean over a window of about ``len(values) / n_points`` values ending at each one."""
    values = np.asarray(values, dtype=float)
    window = max(1, values.size // n_points)
    return pd.Series(values).rolling(window, min_periods=1).mean().to_numpy()


def _finite_rows(log: pd.DataFrame, column: str) -> pd.DataFrame:
    values = pd.to_numeric(log[column], errors="coerce")
    return log.assign(value=values)[np.isfinite(values.to_numpy(dtype=float))]


def epoch_means(log: pd.DataFrame, column: str) -> dict[str, pd.Series]:
    """Split -> the mean of ``column`` per epoch (finite values only), indexed by epoch; {} when not logged."""
    require_columns(log, ("epoch", "split"), "a training loss log")
    if column not in log.columns:
        return {}
    return {str(split): rows.groupby("epoch", sort=True)["value"].mean()
            for split, rows in _finite_rows(log, column).groupby("split", sort=True)}


def step_values(log: pd.DataFrame, column: str) -> dict[str, pd.Series]:
    """Split -> ``column`` by step (finite values only), training rows smoothed by :func:`running_mean`."""
    require_columns(log, ("step", "split"), "a training loss log")
    if column not in log.columns:
        return {}
    curves = {}
    for split, rows in _finite_rows(log, column).groupby("split", sort=True):
        rows = rows.sort_values("step", kind="mergesort")
        values = rows["value"].to_numpy(dtype=float)
        curves[str(split)] = pd.Series(running_mean(values) if split == "train" else values,
                                       index=rows["step"].to_numpy())
    return curves


CURVES_PER = {"step": step_values, "epoch": epoch_means}


def group_runs(logs: Mapping[tuple, pd.DataFrame], by: Callable[[tuple], Hashable]) -> dict:
    """Loss logs keyed by tuples ending in the seed -> ``by(key)`` (the method) -> its runs, in the order given."""
    grouped: dict = {}
    for key, log in logs.items():
        grouped.setdefault(by(tuple(key)), []).append(log)
    return grouped


def _plot(ax, curve: pd.Series, marked: bool = True, **style) -> None:
    marker = "o" if marked and len(curve) < MARKED_POINTS else None
    ax.plot(curve.index, curve.to_numpy(), marker=marker, markersize=2.5, **style)


def _log_scale_over_decades(ax, curves: Sequence[pd.Series]) -> None:
    """A log y axis when every value is positive and they span a factor of ten or more (a loss falling over
    decades); a linear one otherwise (the NCC term makes a registration loss negative)."""
    values = np.concatenate([c.to_numpy() for c in curves]) if curves else np.array([])
    if values.size and np.all(values > 0) and values.max() >= 10 * values.min():
        ax.set_yscale("log")


def draw_loss_curves(ax, runs: Mapping[str, Sequence[pd.DataFrame]], colours: Mapping[str, str],
                     column: str = "total", per: str = "step", seed_mean: bool = False,
                     ylabel: str | None = None) -> None:
    """Every method's runs (one loss log per seed) of ``column`` in the method's colour, against ``per``.

    ``per="step"``: the logged rows, training ones smoothed; ``per="epoch"``:
    each epoch's mean. With several seeds either the first is solid and the
    others faint (``seed_mean`` False) or every seed is faint and their mean
    over seeds thick. A method that does not log ``column`` draws nothing.
    """
    if per not in CURVES_PER:
        raise ValueError(f"per must be one of {sorted(CURVES_PER)}, got {per!r}")
    plotted = []
    for method, logs in runs.items():
        by_split: dict[str, list[pd.Series]] = {}
        for log in logs:
            for split, curve in CURVES_PER[per](log, column).items():
                if len(curve):
                    by_split.setdefault(split, []).append(curve)
        for split, curves in by_split.items():
            style = {"color": colours[method], "linestyle": SPLIT_STYLES.get(split, ":")}
            sparse = per == "epoch" or split != "train"
            several = len(curves) > 1
            for k, curve in enumerate(curves):
                _plot(ax, curve, marked=sparse, **style, **(FAINT if several and (seed_mean or k > 0) else SOLID))
            if several and seed_mean:
                _plot(ax, pd.concat(curves, axis=1).mean(axis=1), marked=False, **style, **MEAN)
            plotted += curves
    _log_scale_over_decades(ax, plotted)
    ax.set_xlabel(per)
    ax.set_ylabel(ylabel or column)
    ax.grid(alpha=0.3, which="both")


def split_entries() -> list:
    """Legend entries for the line style of each split (black: the colours name the methods)."""
    return [line_entry("black", SPLIT_NAMES[split], style) for split, style in SPLIT_STYLES.items()]


def draw_roc(ax, curves: Sequence[tuple[np.ndarray, np.ndarray]], colour, label: str) -> None:
    """ROC curves (false positive rate, true positive rate) of one method in its colour, one per seed (faint
    when there are several), with the chance diagonal and labelled axes."""
    several = len(curves) > 1
    for k, (fpr, tpr) in enumerate(curves):
        ax.plot(fpr, tpr, color=colour, drawstyle="steps-post", label=label if k == 0 else None,
                **(FAINT if several and k > 0 else SOLID))
    ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
