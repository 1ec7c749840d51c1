"""2-D MetaImage (``.mha``) files through SimpleITK, with the spacing in the header."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medrepro.data.atomic import atomic_path
from medrepro.errors import DataError


def write_mha(array: np.ndarray, spacing: tuple[float, float] | None, target: Path) -> None:
    """Write a 2-D array as compressed MetaImage, atomically; ``spacing`` is (row, col) in mm or None."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(array)
    if spacing is not None:
        img.SetSpacing((float(spacing[1]), float(spacing[0])))  # SimpleITK is (x, y)
    with atomic_path(target) as tmp:
        sitk.WriteImage(img, str(tmp), useCompression=True)


def read_mha(path: Path) -> tuple[np.ndarray, tuple[float, float]]:
    """A 2-D MetaImage as (array, (row, col) spacing); DataError naming the file when it cannot be read."""
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise DataError(path, f"cannot read image: {exc}") from exc
    sx, sy = img.GetSpacing()[:2]
    return sitk.GetArrayFromImage(img), (float(sy), float(sx))
