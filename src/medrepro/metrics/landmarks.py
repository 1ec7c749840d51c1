"""Landmark errors for registration evaluation, in millimetres, and the share of landmarks a registration improved.

Landmarks are (n, 3) voxel positions (x, y, z) (or (n, 2) in 2-D), paired by
row; ``spacing`` is the voxel size per axis in the same order (x first), so
``mm = voxel * spacing``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

KINDS = ("euclidean", "per_axis")


def _in_millimetres(a, b, spacing) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"landmarks must be two (n, d) arrays of one shape, got {a.shape} and {b.shape}")
    spacing = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (a.shape[1],))
    return a * spacing, b * spacing


def landmark_distances(a: np.ndarray, b: np.ndarray, spacing: Sequence[float] | float = 1.0) -> np.ndarray:
    """(n,) Euclidean distances in mm between paired voxel positions."""
    a_mm, b_mm = _in_millimetres(a, b, spacing)
    return np.linalg.norm(a_mm - b_mm, axis=1)


def _summarise(a, b, spacing, kind: str, statistic) -> float:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    a_mm, b_mm = _in_millimetres(a, b, spacing)
    if len(a_mm) == 0:
        raise ValueError("no landmarks to compare")
    if kind == "euclidean":
        return float(statistic(np.linalg.norm(a_mm - b_mm, axis=1)))
    return float(np.mean(statistic(np.abs(a_mm - b_mm), axis=0)))


def median_error(a: np.ndarray, b: np.ndarray, spacing: Sequence[float] | float = 1.0,
                 kind: str = "euclidean") -> float:
    """Median landmark error in mm.

    "euclidean": the median of the Euclidean distances. "per_axis": the median
    absolute difference along each axis, averaged over the axes (scikit-learn's
    ``median_absolute_error`` on the mm positions); it is not a distance and
    is smaller than the Euclidean median.
    """
    return _summarise(a, b, spacing, kind, np.median)


def mean_error(a: np.ndarray, b: np.ndarray, spacing: Sequence[float] | float = 1.0,
               kind: str = "euclidean") -> float:
    """Mean landmark error in mm: of the Euclidean distances, or ("per_axis") scikit-learn's ``mean_absolute_error``."""
    return _summarise(a, b, spacing, kind, np.mean)


def robustness(errors_before: np.ndarray, errors_after: np.ndarray) -> float:
    """Share of landmarks whose error after registration is strictly below the error before."""
    before = np.asarray(errors_before, dtype=np.float64).ravel()
    after = np.asarray(errors_after, dtype=np.float64).ravel()
    if before.shape != after.shape:
        raise ValueError(f"{before.size} errors before but {after.size} after")
    if before.size == 0:
        raise ValueError("no landmark errors to compare")
    return float(np.count_nonzero(after < before) / before.size)
