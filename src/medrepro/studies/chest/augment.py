"""Shape augmentation of label maps for the anatomy autoencoder.

The autoencoder must learn a manifold of plausible lung/heart shapes. With the
few training masks of a reduced run (18 in the default configuration, against
~150 in the paper's JSRT fold) it memorises them, and its code distance then
rewards border perturbations instead of anatomical alignment. Random similarity
transforms plus a smooth elastic field produce new plausible shapes from the
training masks; ``config/paper.yaml`` turns this off (0 augmented masks).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def random_shape_variant(labels: np.ndarray, rng: np.random.Generator, max_angle_deg: float = 6.0,
                         max_scale: float = 0.07, max_shift: float = 0.05, elastic_sigma: float = 0.1,
                         elastic_magnitude: float = 0.03) -> np.ndarray:
    """One label map resampled (nearest neighbour) through a random similarity plus elastic warp.

    Shifts, the elastic field's smoothness (``elastic_sigma``) and its typical
    displacement (``elastic_magnitude``) are fractions of the image side, so the
    same settings mean the same anatomy change at any resolution.
    """
    h, w = labels.shape
    side = float(max(h, w))
    angle = np.deg2rad(rng.uniform(-max_angle_deg, max_angle_deg))
    scale = 1.0 + rng.uniform(-max_scale, max_scale)
    shift = rng.uniform(-max_shift, max_shift, 2) * side
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) / scale
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    grid = np.stack([rows.ravel(), cols.ravel()])
    source = rotation @ (grid - (centre + shift)[:, None]) + centre[:, None]
    for axis in range(2):
        field = ndimage.gaussian_filter(rng.standard_normal((h, w)), elastic_sigma * side)
        field *= elastic_magnitude * side / (field.std() + 1e-12)
        source[axis] += field.ravel()
    warped = ndimage.map_coordinates(labels, source, order=0, mode="constant", cval=0)
    return warped.reshape(h, w).astype(labels.dtype)


def augment_masks(labels: np.ndarray, n: int, seed: int, **variation) -> np.ndarray:
    """``n`` shape variants of the (N, H, W) label maps, cycling through them in order."""
    if n <= 0:
        return labels[:0].copy()
    rng = np.random.default_rng(seed)
    return np.stack([random_shape_variant(labels[i % len(labels)], rng, **variation) for i in range(n)])
