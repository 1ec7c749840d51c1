"""The prealigned dataset file: every subject on one square grid, in one ``.npz``.

Arrays (N subjects, S x S pixels):

- ``images``   (N, S, S) float32, intensities in 0..1
- ``labels``   (N, S, S) uint8, 0 background, 1 right lung, 2 left lung, 3 heart
- ``names``    (N,) str, unique subject names
- ``spacing``  (N, 2) float64, mm per pixel (row, col) at size S; NaN when unknown
- ``reference`` () str, the subject every image was pre-aligned to

Strings are stored as fixed-width unicode arrays, so the file loads without
pickle.
"""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from medrepro.data.atomic import atomic_path
from medrepro.errors import DataError

KEYS = ("images", "labels", "names", "spacing", "reference")
# Cubic resampling may overshoot 0..1 by rounding-level amounts before clipping.
_RANGE_TOLERANCE = 1e-4


@dataclasses.dataclass
class PrealignedSet:
    """A prealigned dataset in memory (see the module docstring for the fields)."""

    images: np.ndarray
    labels: np.ndarray
    names: np.ndarray
    spacing: np.ndarray
    reference: str

    def __post_init__(self) -> None:
        self._positions = {str(name): i for i, name in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    @property
    def size(self) -> int:
        """Side length S of the square images."""
        return int(self.images.shape[-1])

    def index(self, name: str) -> int:
        """Position of subject ``name``; KeyError naming it when absent."""
        try:
            return self._positions[str(name)]
        except KeyError:
            raise KeyError(f"subject {name!r} is not in the prealigned set") from None

    def subset(self, names: Iterable[str]) -> "PrealignedSet":
        """The subjects ``names``, in that order (copies, not views)."""
        positions = np.array([self.index(n) for n in names], dtype=np.intp)
        return PrealignedSet(
            images=self.images[positions],
            labels=self.labels[positions],
            names=self.names[positions],
            spacing=self.spacing[positions],
            reference=self.reference,
        )


def _validated(path: str | Path, images, labels, names, spacing, reference) -> dict[str, np.ndarray]:
    """Check the arrays against the format; return them with the stored dtypes."""
    images, labels = np.asarray(images), np.asarray(labels)
    names, spacing = np.asarray(names), np.asarray(spacing)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise DataError(path, f"images must be (N, S, S) square, got shape {images.shape}")
    n, size = images.shape[0], images.shape[1]
    if n == 0 or size == 0:
        raise DataError(path, f"images must hold at least one non-empty image, got shape {images.shape}")
    if labels.shape != images.shape:
        raise DataError(path, f"labels shape {labels.shape} differs from images shape {images.shape}")
    if names.shape != (n,):
        raise DataError(path, f"names must be ({n},), got shape {names.shape}")
    if spacing.shape != (n, 2):
        raise DataError(path, f"spacing must be ({n}, 2), got shape {spacing.shape}")
    if not np.issubdtype(images.dtype, np.floating):
        raise DataError(path, f"images must be floating point, got dtype {images.dtype}")
    if not np.all(np.isfinite(images)):
        raise DataError(path, "images contain NaN or infinite values")
    low, high = float(images.min()), float(images.max())
    if low < -_RANGE_TOLERANCE or high > 1 + _RANGE_TOLERANCE:
        raise DataError(path, f"images must lie in 0..1, found {low:.4g}..{high:.4g}")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_):
        raise DataError(path, f"labels must be integers, got dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() > 255:
        raise DataError(path, f"labels must lie in 0..255, found {labels.min()}..{labels.max()}")
    if names.dtype.kind not in "UO":
        raise DataError(path, f"names must be strings, got dtype {names.dtype}")
    names = names.astype(str)
    if "" in set(names.tolist()):
        raise DataError(path, "names contain an empty string")
    unique, counts = np.unique(names, return_counts=True)
    duplicates = unique[counts > 1].tolist()
    if duplicates:
        raise DataError(path, f"duplicate subject names {duplicates[:5]}")
    if not np.issubdtype(spacing.dtype, np.number):
        raise DataError(path, f"spacing must be numeric, got dtype {spacing.dtype}")
    spacing = spacing.astype(np.float64)
    known = spacing[~np.isnan(spacing)]
    if not np.all(np.isfinite(known)) or np.any(known <= 0):
        raise DataError(path, "spacing values must be positive and finite, or NaN when unknown")
    reference = np.asarray(reference)
    if reference.shape != () or reference.dtype.kind not in "UO" or not str(reference):
        raise DataError(path, f"reference must be one non-empty name, got {reference!r}")
    return {
        "images": images.astype(np.float32, copy=False),
        "labels": labels.astype(np.uint8, copy=False),
        "names": names,
        "spacing": spacing,
        "reference": np.asarray(str(reference)),
    }


def save_prealigned(
    path: str | Path,
    images: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str] | np.ndarray,
    spacing: np.ndarray,
    reference: str,
) -> None:
    """Validate and write a prealigned dataset (compressed npz, atomically)."""
    arrays = _validated(path, images, labels, names, spacing, reference)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:  # a file object stops numpy appending ".npz"
            np.savez_compressed(handle, **arrays)


def load_prealigned(path: str | Path) -> PrealignedSet:
    """Read and validate a prealigned dataset; DataError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "prealigned dataset file is missing")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in KEYS if key not in archive.files]
            if missing:
                raise DataError(path, f"not a prealigned dataset: missing arrays {missing}")
            raw = {key: archive[key] for key in KEYS}
    except DataError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DataError(path, f"cannot read as an npz archive: {exc}") from exc
    arrays = _validated(path, **raw)
    return PrealignedSet(
        images=arrays["images"],
        labels=arrays["labels"],
        names=arrays["names"],
        spacing=arrays["spacing"],
        reference=str(arrays["reference"]),
    )
