"""Jacobian determinant of a displacement field in voxel units, and the share of folded voxels.

Fields follow ``medrepro.spatial.warp``: channel 0 = x, 1 = y (2 = z), arrays
(D, H, W) = (z, y, x), the transform is ``p -> p + u(p)``. Derivatives are
``np.gradient``'s: central differences inside, one-sided at the borders.
"""

from __future__ import annotations

import numpy as np
import torch


def _spatial_derivatives(field, n_dims: int) -> list[list]:
    """derivatives[c][j] = d u_c / d x_j for channel c and axis j (x first), on the last ``n_dims`` axes."""
    axes = [-1 - j for j in range(n_dims)]  # x is the last array axis, then y (then z)
    channel_axis = -1 - n_dims
    if isinstance(field, torch.Tensor):
        per_axis = torch.gradient(field, dim=axes)
        channel = lambda array, c: array.select(channel_axis, c)  # noqa: E731
    else:
        per_axis = np.gradient(field, axis=axes)
        channel = lambda array, c: np.take(array, c, axis=channel_axis)  # noqa: E731
    return [[channel(per_axis[j], c) for j in range(n_dims)] for c in range(n_dims)]


def _determinant(m: list[list]):
    if len(m) == 2:
        return m[0][0] * m[1][1] - m[0][1] * m[1][0]
    return (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]))


def _field_dims(field) -> int:
    """2 for a (2, H, W) field, 3 for (3, D, H, W) or a batch (B, 3, D, H, W); ValueError otherwise.

    The number of array axes decides, so that a batch of 2-D fields, (B, 2, H, W),
    is never mistaken for one 3-D field: pass those one at a time.
    """
    n_dims = {3: 2, 4: 3, 5: 3}.get(field.ndim)
    if n_dims is None or field.shape[-1 - n_dims] != n_dims:
        raise ValueError(
            f"displacement must be (2, H, W), (3, D, H, W) or (B, 3, D, H, W), got shape {tuple(field.shape)}"
        )
    if min(field.shape[-n_dims:]) < 2:
        raise ValueError(f"the field needs at least 2 voxels along every axis, got {tuple(field.shape)}")
    return n_dims


def jacobian_determinant(displacement: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """``det(I + grad u)`` at every voxel: (D, H, W) for a (3, D, H, W) field, (H, W) for (2, H, W).

    A (B, 3, D, H, W) batch gives (B, D, H, W). NumPy in, NumPy out (float64); a
    tensor gives a tensor of its dtype, differentiable. Values below 1 shrink
    volume, values <= 0 fold it.
    """
    if not isinstance(displacement, torch.Tensor):
        displacement = np.asarray(displacement, dtype=np.float64)
    n_dims = _field_dims(displacement)
    derivatives = _spatial_derivatives(displacement, n_dims)
    for c in range(n_dims):
        derivatives[c][c] = derivatives[c][c] + 1.0
    return _determinant(derivatives)


def folding_fraction(determinant: np.ndarray | torch.Tensor) -> float:
    """Share of voxels whose Jacobian determinant is <= 0 (folded); ValueError when empty."""
    if isinstance(determinant, torch.Tensor):
        determinant = determinant.detach().cpu().numpy()
    determinant = np.asarray(determinant)
    if determinant.size == 0:
        raise ValueError("no Jacobian determinants to count")
    return float(np.count_nonzero(determinant <= 0) / determinant.size)
