"""Overlap between two binary masks (Dice similarity coefficient).

Any non-zero value is foreground, as in medpy. Empty masks are decided
explicitly because medpy versions disagree (``dc`` of two empty masks is 0 up
to 0.4.0 and 1 from 0.5):

* both masks empty -> 1.0 (the two segmentations agree perfectly);
* exactly one empty -> 0.0 (no overlap), which the usual formula already gives.

For non-empty masks the value equals ``medpy.metric.binary.dc``.
"""

from __future__ import annotations

import numpy as np


def as_mask_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return both inputs as boolean arrays (non-zero = foreground) of one shape."""
    a = np.atleast_1d(np.asarray(a)).astype(bool, copy=False)
    b = np.atleast_1d(np.asarray(b)).astype(bool, copy=False)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    return a, b


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice similarity coefficient 2|A∩B| / (|A| + |B|); 1.0 when both are empty."""
    a, b = as_mask_pair(a, b)
    size_a = int(np.count_nonzero(a))
    size_b = int(np.count_nonzero(b))
    if size_a + size_b == 0:
        return 1.0
    intersection = int(np.count_nonzero(a & b))
    return 2.0 * intersection / float(size_a + size_b)
