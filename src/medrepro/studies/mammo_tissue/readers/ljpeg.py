"""The DDSM's lossless JPEG images (``.LJPEG``: SOF3, written by the PVRG encoder), read with imagecodecs.

Two traps of the real files: some headers have width and height swapped, so the size comes from the case's
``.ics`` and a decoded image of the transposed shape is read in that size (the pixel stream is row by row
either way); and a few files hit an encoder bug and decode, without any error, to a wrong smooth pattern.
So a decoded image must be plausible (:func:`check_plausible`): its size, values within the digitiser's bit
depth, and the structure of a scan rather than a ramp. Anything else is an error naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medrepro.data.atomic import atomic_path
from medrepro.errors import DataError

# A decoded image that a plane fits to within this share of its value range is a ramp, not a scan.
RAMP_RESIDUAL = 0.01


def read_ljpeg(path: str | Path, rows: int, cols: int, bits: int) -> np.ndarray:
    """A view's raw grey levels (uint16, rows x cols) from its ``.LJPEG``, checked to be plausible."""
    import imagecodecs

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(path, f"cannot read the image: {exc}") from exc
    try:
        image = imagecodecs.ljpeg_decode(data)
    except Exception as exc:  # noqa: BLE001 - the codec's errors have no common base class
        raise DataError(path, f"not a readable lossless JPEG ({type(exc).__name__}: {exc}); the file may be "
                              "truncated or corrupt: download it again") from exc
    image = np.asarray(image)
    if image.shape == (cols, rows) and rows != cols:
        image = image.reshape(rows, cols)  # a header with width and height swapped
    if image.shape != (rows, cols):
        raise DataError(path, f"decodes to {image.shape[0]} x {image.shape[1]} pixels, but the case's .ics gives "
                              f"{rows} x {cols} (LINES x PIXELS_PER_LINE), nor is it the transpose")
    check_plausible(path, image, bits)
    return image.astype(np.uint16, copy=False)


def check_plausible(path: str | Path, image: np.ndarray, bits: int) -> None:
    """A decoded scan must lie within its bit depth and not be a smooth ramp (the PVRG encoder's bug)."""
    top = int(image.max())
    if top >= 2 ** bits:
        raise DataError(path, f"decoded values reach {top}, beyond the {bits}-bit range of its digitiser "
                              f"(at most {2 ** bits - 1}): a decoding error")
    span = top - int(image.min())
    if span == 0:
        raise DataError(path, f"decodes to a constant image ({top}): not a scan")
    if _ramp_residual(image) < RAMP_RESIDUAL * span:
        raise DataError(path, "decodes to a smooth ramp, not a scan: the lossless-JPEG encoder bug of some DDSM "
                              "files (it decodes without error to a wrong pattern); this file cannot be used")


def _ramp_residual(image: np.ndarray) -> float:
    """The standard deviation left after fitting a plane to the image (on a grid of at most 128 x 128)."""
    step = max(1, max(image.shape) // 128)
    sample = image[::step, ::step].astype(np.float64)
    rows, cols = np.mgrid[:sample.shape[0], :sample.shape[1]]
    design = np.column_stack([np.ones(sample.size), rows.ravel(), cols.ravel()])
    coefficients, *_ = np.linalg.lstsq(design, sample.ravel(), rcond=None)
    return float(np.std(sample.ravel() - design @ coefficients))


def write_ljpeg(path: str | Path, image: np.ndarray, bits: int) -> None:
    """Write raw grey levels as lossless JPEG of ``bits`` bits per sample (the stand-in's images), atomically."""
    import imagecodecs

    image = np.ascontiguousarray(image, dtype=np.uint16)
    if int(image.max()) >= 2 ** bits:
        raise ValueError(f"values up to {int(image.max())} do not fit {bits} bits")
    data = imagecodecs.ljpeg_encode(image, bitspersample=bits)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
