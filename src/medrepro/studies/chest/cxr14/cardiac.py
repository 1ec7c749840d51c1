"""Cardiothoracic ratio (CTR) from a lung and heart label map.

CTR = transverse cardiac diameter / internal thoracic diameter. The cardiac
diameter is the horizontal distance between the leftmost and rightmost heart
pixels (the sum of the right and left maximal distances from the midline,
which may lie on different rows); the thoracic diameter is the distance
between the outermost lung pixels, i.e. the lateral borders of the two lungs.
Widths count pixels inclusively (last column - first column + 1), so a single
pixel column has width 1 and the ratio does not depend on the pixel size.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["cardiothoracic_ratio", "cardiothoracic_ratios"]


def _column_extent(present: np.ndarray) -> np.ndarray:
    """Width in pixels of the occupied columns of each (N, W) row; 0 where none is occupied."""
    width = present.shape[1]
    first = np.argmax(present, axis=1)
    last = width - 1 - np.argmax(present[:, ::-1], axis=1)
    return np.where(present.any(axis=1), last - first + 1, 0)


def cardiothoracic_ratios(masks: np.ndarray, heart: int = 3, lungs: Sequence[int] = (1, 2)) -> np.ndarray:
    """CTR of each (N, H, W) label map; float64 (N,).

    NaN where the heart or any of the ``lungs`` labels is absent: without
    both lateral lung borders the thoracic diameter is not measurable, and a
    ratio computed from one lung would look like an enlarged heart.
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be an (N, H, W) stack, got shape {masks.shape}")
    lungs = tuple(int(label) for label in lungs)
    if not lungs or int(heart) in lungs:
        raise ValueError(f"need at least one lung label distinct from the heart label {heart}, got {lungs}")
    heart_width = _column_extent((masks == heart).any(axis=1))
    thorax_width = _column_extent(np.isin(masks, lungs).any(axis=1))
    all_lungs = np.stack([(masks == label).any(axis=(1, 2)) for label in lungs]).all(axis=0)
    valid = (heart_width > 0) & all_lungs
    return np.where(valid, heart_width / np.maximum(thorax_width, 1), np.nan)


def cardiothoracic_ratio(mask: np.ndarray, heart: int = 3, lungs: Sequence[int] = (1, 2)) -> float:
    """CTR of one (H, W) label map; NaN when the heart or a lung is absent (see the module docstring)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be an (H, W) label map, got shape {mask.shape}")
    return float(cardiothoracic_ratios(mask[None], heart, lungs)[0])
