"""Distributions of per-case scores: box plots with every case as a dot, and overlaid histograms."""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

JITTER = 0.15  # half the width, in box widths, over which a box's dots are spread


def draw_box_plots(ax, groups: Mapping[str, np.ndarray], ylabel: str, rng: np.random.Generator,
                   colour: str = "#1f77b4") -> None:
    """One box per group (label -> scores; missing values dropped), each score a dot jittered by ``rng``."""
    labels = list(groups)
    values = [np.asarray(groups[label], dtype=float) for label in labels]
    values = [v[np.isfinite(v)] for v in values]
    ax.boxplot(values, showfliers=False, widths=0.6)
    for position, scores in enumerate(values, start=1):
        ax.scatter(position + rng.uniform(-JITTER, JITTER, scores.size), scores, s=6, alpha=0.5, color=colour,
                   zorder=3)
    ax.set_xticks(range(1, len(labels) + 1), labels, rotation=35, ha="right")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, axis="y")


@dataclasses.dataclass(frozen=True)
class Histogram:
    """One series of a histogram panel: filled (the one to read first) or a step outline."""

    label: str
    values: np.ndarray
    colour: str
    weights: np.ndarray | None = None
    filled: bool = False
    alpha: float = 0.55  # of a filled series, so the outlines show through


def draw_histograms(ax, series: Sequence[Histogram], bins: np.ndarray, xlabel: str, ylabel: str) -> None:
    """Every series over the same ``bins``, values outside them counted in the first or last bin.

    Filled series sit below the outlines; one legend names them all.
    """
    bins = np.asarray(bins, dtype=float)
    for one in series:
        values = np.clip(np.asarray(one.values, dtype=float), bins[0], bins[-1])
        ax.hist(values, bins=bins, weights=one.weights, histtype="stepfilled" if one.filled else "step",
                color=one.colour, alpha=one.alpha if one.filled else 1.0, linewidth=0.0 if one.filled else 1.4,
                label=one.label, zorder=1 if one.filled else 2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
