"""Images and calcification masks brought to one pixel size (the paper's 0.05 mm by default).

The paper's patch sizes (29-49 pixels), its C2 band (2-3 pixels from the centre) and its cluster window (1 cm^2)
are all in pixels of 0.05 mm, while INbreast has about 0.07 mm and digitised films 0.04-0.1 mm. Each axis is
resampled on its own, the output grid starting at the image's top-left edge with exactly the target pixel size
and as many pixels as it takes to cover the input (the last one may reach past the input's edge; it then
averages, or copies, what it covers):

* **Image**: shrinking (target pixels larger) averages the input pixels each output pixel covers, weighted by
  the covered length (area interpolation: no aliasing of film grain into false specks); enlarging interpolates
  linearly between the two nearest pixel centres. The result is float32 in the input's units.
* **Mask**: a microcalcification of 0.1 mm is one or two pixels, so any interpolation followed by a threshold
  can drop it. Shrinking marks an output pixel as calcification when any input calcification pixel overlaps it
  (max-pooling over its footprint); enlarging copies the input pixel that holds the output pixel's centre
  (nearest neighbour). Either way the output pixel holding an input calcification pixel's centre is itself
  calcification, so no calcification vanishes; shrinking may fatten one by a pixel, which suits a patch label
  ("a calcification is in this patch") better than losing it would.

At the input's own pixel size the image and mask come back unchanged (copies).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from scipy import sparse

from medrepro.errors import ConfigError
from medrepro.studies.microcalc.readers import CalcificationImage, check_spacing

PAPER_PIXEL_MM = 0.05
#: Relative difference in pixel size under which an axis is left as it is.
SAME_SIZE_TOLERANCE = 1e-9


def _check_target(pixel_mm: float) -> float:
    if isinstance(pixel_mm, bool) or not (isinstance(pixel_mm, (int, float)) and math.isfinite(pixel_mm)
                                          and 0 < pixel_mm <= 10):
        raise ConfigError(f"resampling: pixel_mm={pixel_mm!r} must be a pixel size in mm in (0, 10]")
    return float(pixel_mm)


def output_length(n: int, spacing_mm: float, pixel_mm: float) -> int:
    """Pixels of ``pixel_mm`` along an axis of ``n`` pixels of ``spacing_mm``: enough to cover it."""
    if abs(spacing_mm / pixel_mm - 1.0) < SAME_SIZE_TOLERANCE:
        return n
    return max(int(math.ceil(n * spacing_mm / pixel_mm - 1e-6)), 1)


def output_shape(shape: tuple[int, int], spacing_mm: tuple[float, float], pixel_mm: float = PAPER_PIXEL_MM
                 ) -> tuple[int, int]:
    """(rows, cols) of an image of ``shape`` and ``spacing_mm`` (row, col) resampled to ``pixel_mm``."""
    return tuple(output_length(int(n), float(s), _check_target(pixel_mm)) for n, s in zip(shape, spacing_mm))


def _overlaps(n_in: int, s: float, n_out: int, t: float) -> sparse.csr_matrix:
    """(n_out, n_in): the length (mm) of output pixel i's span [i t, (i + 1) t) that input pixel j covers."""
    reach = int(math.ceil(t / s)) + 1
    rows, cols, values = [], [], []
    for i in range(n_out):
        low, high = i * t, (i + 1) * t
        first = int(math.floor(low / s))
        j = np.arange(first, min(first + reach + 1, n_in))
        length = np.minimum(high, (j + 1) * s) - np.maximum(low, j * s)
        keep = length > 1e-9 * min(s, t)  # spans that only touch share no area
        rows.append(np.full(int(keep.sum()), i))
        cols.append(j[keep])
        values.append(length[keep])
    return sparse.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(n_out, n_in))


def _linear(n_in: int, s: float, n_out: int, t: float) -> sparse.csr_matrix:
    """(n_out, n_in): linear interpolation at the output pixel centres, clamped to the first and last input ones."""
    position = np.clip((np.arange(n_out) + 0.5) * t / s - 0.5, 0.0, n_in - 1)
    left = np.floor(position).astype(np.int64)
    right = np.minimum(left + 1, n_in - 1)
    weight = position - left
    rows = np.concatenate([np.arange(n_out), np.arange(n_out)])
    return sparse.csr_matrix((np.concatenate([1 - weight, weight]), (rows, np.concatenate([left, right]))),
                             shape=(n_out, n_in))


def _nearest(n_in: int, s: float, n_out: int, t: float) -> sparse.csr_matrix:
    """(n_out, n_in): each output pixel takes the input pixel its centre falls in."""
    source = np.clip(np.floor((np.arange(n_out) + 0.5) * t / s).astype(np.int64), 0, n_in - 1)
    return sparse.csr_matrix((np.ones(n_out), (np.arange(n_out), source)), shape=(n_out, n_in))


def _axis_operator(n_in: int, s: float, t: float, for_mask: bool) -> sparse.csr_matrix | None:
    """One axis's resampling as a sparse matrix (None: the axis stays as it is)."""
    n_out = output_length(n_in, s, t)
    if abs(s / t - 1.0) < SAME_SIZE_TOLERANCE:
        return None
    if s < t:  # shrinking
        overlaps = _overlaps(n_in, s, n_out, t)
        if for_mask:
            return (overlaps > 0).astype(np.float32)
        totals = np.asarray(overlaps.sum(axis=1)).ravel()
        return sparse.diags(1.0 / totals) @ overlaps
    return _nearest(n_in, s, n_out, t) if for_mask else _linear(n_in, s, n_out, t)


def _apply(array: np.ndarray, row_op, col_op) -> np.ndarray:
    out = array
    if row_op is not None:
        out = np.asarray(row_op.astype(np.float32) @ out)
    if col_op is not None:
        out = np.asarray(col_op.astype(np.float32) @ out.T).T
    return np.ascontiguousarray(out, dtype=np.float32)


def _checked(array: np.ndarray, spacing_mm) -> tuple[float, float]:
    if np.ndim(array) != 2:
        raise ValueError(f"expected a 2-D array, got shape {np.shape(array)}")
    return check_spacing(spacing_mm, None, "spacing_mm")


def resample_image(image: np.ndarray, spacing_mm: tuple[float, float], pixel_mm: float = PAPER_PIXEL_MM
                   ) -> np.ndarray:
    """``image`` (pixel size ``spacing_mm``, row and col) at ``pixel_mm``: area averaging where it shrinks,
    linear interpolation where it grows; float32."""
    s_row, s_col = _checked(image, spacing_mm)
    t = _check_target(pixel_mm)
    rows, cols = np.shape(image)
    return _apply(np.asarray(image, dtype=np.float32), _axis_operator(rows, s_row, t, False),
                  _axis_operator(cols, s_col, t, False))


def resample_mask(mask: np.ndarray, spacing_mm: tuple[float, float], pixel_mm: float = PAPER_PIXEL_MM
                  ) -> np.ndarray:
    """A bool mask at ``pixel_mm`` that keeps every calcification: any overlap where it shrinks, nearest
    neighbour where it grows (module docstring)."""
    s_row, s_col = _checked(mask, spacing_mm)
    t = _check_target(pixel_mm)
    rows, cols = np.shape(mask)
    values = _apply(np.asarray(mask, dtype=np.float32), _axis_operator(rows, s_row, t, True),
                    _axis_operator(cols, s_col, t, True))
    return values > 0


def resample_record(record: CalcificationImage, pixel_mm: float = PAPER_PIXEL_MM) -> CalcificationImage:
    """A reader's image and mask at ``pixel_mm`` (square pixels); the image becomes float32 in stored units, so
    ``max_value`` still normalises it."""
    image = resample_image(record.image, record.spacing_mm, pixel_mm)
    mask = resample_mask(record.mask, record.spacing_mm, pixel_mm)
    target = _check_target(pixel_mm)
    return replace(record, image=image, mask=mask, spacing_mm=(target, target))
