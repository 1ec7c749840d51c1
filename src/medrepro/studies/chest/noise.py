"""Border-swap noise for training the denoising autoencoder.

The paper corrupts a clean mask by "swapping the border pixels of the
anatomical structures with the label of its left neighbour with a probability
of 0.1". Here a *border pixel* is a pixel (r, c) with c >= 1 whose left
neighbour (r, c - 1) carries a different label in the clean mask. This picks
one pixel per horizontal label transition: the first pixel of a structure on
its left edge (which may turn into background) and the first background (or
other-structure) pixel past its right edge (which may join the structure), so
the noise jitters each boundary horizontally by at most one pixel. Pixels in
column 0 have no left neighbour and never change.
"""

from __future__ import annotations

import numpy as np


def border_pixels(labels: np.ndarray) -> np.ndarray:
    """Boolean mask of the border pixels (see the module docstring), same shape as ``labels``."""
    border = np.zeros(labels.shape, dtype=bool)
    border[..., 1:] = labels[..., 1:] != labels[..., :-1]
    return border


def corrupt_borders(labels: np.ndarray, p: float = 0.1, rng: np.random.Generator | None = None) -> np.ndarray:
    """Give each border pixel its left neighbour's label with probability ``p``.

    ``labels`` is an integer (H, W) mask or an (N, H, W) stack; decisions are
    independent per pixel and use the clean mask's neighbours, so corruption
    does not propagate along a row. Returns a new array of the same dtype;
    ``p = 0`` returns an unchanged copy. One uniform draw is taken per pixel
    whatever the mask, so the generator advances by the same amount for every
    mask of a given shape.
    """
    if rng is None:
        raise ValueError("pass a seeded numpy Generator as rng so that the noise is reproducible")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p}")
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an integer (H, W) or (N, H, W) array, got {labels.dtype} {labels.shape}")
    swap = border_pixels(labels) & (rng.random(labels.shape) < p)
    corrupted = labels.copy()
    left_neighbours = np.zeros_like(labels)
    left_neighbours[..., 1:] = labels[..., :-1]
    corrupted[swap] = left_neighbours[swap]
    return corrupted
