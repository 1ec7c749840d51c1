"""Points moved by a dense displacement field, and their pre-images.

Points are (n, 3) float voxel indices (x, y, z), or (n, 2) (x, y) in 2-D;
fields follow ``medrepro.spatial.warp``: (3, D, H, W) NumPy arrays with
channel 0 = x, 1 = y, 2 = z and array axes (z, y, x), in voxels, the
transform being ``p -> p + u(p)``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _check_field_and_points(displacement, points) -> tuple[np.ndarray, np.ndarray]:
    displacement = np.asarray(displacement, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    n_dims = displacement.ndim - 1
    if n_dims not in (2, 3) or displacement.shape[0] != n_dims:
        raise ValueError(f"displacement must be (2, H, W) or (3, D, H, W), got shape {displacement.shape}")
    if points.ndim != 2 or points.shape[1] != n_dims:
        raise ValueError(f"points must be (n, {n_dims}) for a {n_dims}-D field, got shape {points.shape}")
    return displacement, points


def sample_field(displacement: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The field at sub-voxel ``points``: (n, 3) (x, y, z) displacements, (bi)trilinear; outside, the nearest edge."""
    displacement, points = _check_field_and_points(displacement, points)
    array_coordinates = points[:, ::-1].T  # the arrays index (z, y, x)
    return np.stack(
        [ndimage.map_coordinates(component, array_coordinates, order=1, mode="nearest") for component in displacement],
        axis=1,
    )


def map_points(displacement: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Where the field sends fixed-grid ``points``: ``p + u(p)``."""
    displacement, points = _check_field_and_points(displacement, points)
    return points + sample_field(displacement, points)


def invert_points(displacement: np.ndarray, target_points: np.ndarray, iterations: int = 50,
                  tol: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Pre-images p with ``p + u(p) = q`` of ``target_points`` q, by the fixed-point iteration ``p <- q - u(p)``.

    Starts at p = q and stops once every residual ``|p + u(p) - q|`` (voxels)
    is below ``tol`` or after ``iterations`` steps. The iteration converges
    where the field is a contraction (its local Lipschitz constant below 1,
    e.g. smooth fields with small gradients); elsewhere it may not, so the
    residuals come back with the points for the caller to judge:
    returns ``(points (n, 3), residual (n,))``.
    """
    displacement, targets = _check_field_and_points(displacement, target_points)
    estimate = targets.copy()
    for _ in range(iterations):
        residual = np.linalg.norm(map_points(displacement, estimate) - targets, axis=1)
        if residual.size == 0 or residual.max() < tol:
            return estimate, residual
        estimate = targets - sample_field(displacement, estimate)
    return estimate, np.linalg.norm(map_points(displacement, estimate) - targets, axis=1)
