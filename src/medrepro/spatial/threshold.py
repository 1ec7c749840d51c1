"""Global grey-level thresholds: Otsu's split of a histogram (the breast against the background of a mammogram)."""

from __future__ import annotations

import numpy as np


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of ``values``: the split of their histogram with the largest between-class variance
    (the middle of the range of equally good splits)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    counts, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(counts)
    total = weight[-1]
    mean_low = np.cumsum(counts * centres) / np.maximum(weight, 1)
    mean_all = (counts * centres).sum() / total
    weight_high = total - weight
    mean_high = (mean_all * total - mean_low * weight) / np.maximum(weight_high, 1)
    between = (weight * weight_high * (mean_low - mean_high) ** 2)[:-1]
    # Empty bins between two modes give the same split: take the middle of the best ones, not the first.
    best = np.flatnonzero(between >= between.max() * (1 - 1e-12))
    return float((centres[best[0]] + centres[best[-1]]) / 2)
