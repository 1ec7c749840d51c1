"""3-D NIfTI volumes through SimpleITK, with their geometry, and points between physical and voxel space.

Arrays are (z, y, x), as SimpleITK's ``GetArrayFromImage`` returns them. Points are (n, 3) in (x, y, z) order:
physical points in ITK's LPS millimetres, continuous voxel indices with voxel centres at integers. SimpleITK
converts the file's RAS affine to LPS on reading, so the geometry here is the one ITK-based tools (ANTs, elastix)
see. Every problem is a :class:`DataError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medrepro.data.atomic import atomic_path
from medrepro.errors import DataError


@dataclass(frozen=True)
class Geometry:
    """A volume's grid: spacing, origin (x, y, z) and the 3 x 3 direction matrix (columns are the axes)."""

    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    @classmethod
    def of(cls, image) -> "Geometry":
        return cls(tuple(map(float, image.GetSpacing())), tuple(map(float, image.GetOrigin())),
                   tuple(map(float, image.GetDirection())))

    def apply_to(self, image) -> None:
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)

    @property
    def matrix(self) -> np.ndarray:
        """Index -> physical: ``physical = origin + matrix @ index``."""
        return np.asarray(self.direction, dtype=float).reshape(3, 3) * np.asarray(self.spacing)[None, :]

    def index_to_physical(self, index: np.ndarray) -> np.ndarray:
        index = np.asarray(index, dtype=float).reshape(-1, 3)
        return index @ self.matrix.T + np.asarray(self.origin)

    def physical_to_index(self, points: np.ndarray) -> np.ndarray:
        """Continuous (sub-voxel) indices of physical points; no rounding."""
        points = np.asarray(points, dtype=float).reshape(-1, 3)
        return np.linalg.solve(self.matrix, (points - np.asarray(self.origin)).T).T

    def same_grid(self, other: "Geometry", shape: tuple, other_shape: tuple, atol: float = 1e-4) -> bool:
        return (tuple(shape) == tuple(other_shape)
                and np.allclose(self.spacing, other.spacing, atol=atol)
                and np.allclose(self.origin, other.origin, atol=atol)
                and np.allclose(self.direction, other.direction, atol=atol))


def read_header(path: str | Path):
    """The image's size (x, y, z) and geometry without reading its voxels."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise DataError(path, f"not a readable NIfTI volume ({_first_line(error)})") from None
    return reader


def read_volume(path: str | Path, dtype=np.float32) -> tuple[np.ndarray, Geometry]:
    """A 3-D scalar volume as a (z, y, x) array and its geometry."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "missing: the volume is not there")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise DataError(path, f"not a readable NIfTI volume: truncated or corrupt ({_first_line(error)})") from None
    _check_complete(path, image)
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise DataError(path, f"expected a 3-D scalar volume, got {image.GetDimension()}-D with "
                              f"{image.GetNumberOfComponentsPerPixel()} component(s) per voxel")
    array = sitk.GetArrayFromImage(image)
    if not np.all(np.isfinite(array)):
        raise DataError(path, "holds non-finite voxel values")
    return array.astype(dtype, copy=False), Geometry.of(image)


def write_volume(path: str | Path, array: np.ndarray, geometry: Geometry, compression_level: int = 1) -> None:
    """A (z, y, x) array as a NIfTI file (gzip when the name ends in .gz), atomically."""
    import SimpleITK as sitk

    if array.ndim != 3:
        raise ValueError(f"write_volume takes a (z, y, x) array, got shape {array.shape}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    geometry.apply_to(image)
    path = Path(path)
    with atomic_path(path) as tmp:  # the temporary keeps the suffix that tells ITK the format
        sitk.WriteImage(image, str(tmp), True, compression_level)


NIFTI_HEADER_BYTES = 348


def _check_complete(path: Path, image) -> None:
    """A gzipped volume whose stream ends early: ITK reads it without complaint and fills the rest with zeros."""
    if path.suffix != ".gz":
        return
    import gzip
    import zlib

    expected = NIFTI_HEADER_BYTES + int(np.prod(image.GetSize())) * image.GetNumberOfComponentsPerPixel() \
        * np.dtype(_NUMPY_TYPES.get(image.GetPixelIDTypeAsString(), np.uint8)).itemsize
    try:
        with gzip.open(path, "rb") as stream:
            length = sum(len(chunk) for chunk in iter(lambda: stream.read(1 << 22), b""))
    except (EOFError, OSError, zlib.error) as error:
        raise DataError(path, f"not a readable NIfTI volume: truncated or corrupt ({error})") from None
    if length < expected:
        raise DataError(path, f"not a readable NIfTI volume: truncated ({length} bytes of image data and header, "
                              f"at least {expected} expected)")


_NUMPY_TYPES = {"8-bit unsigned integer": np.uint8, "8-bit signed integer": np.int8,
                "16-bit unsigned integer": np.uint16, "16-bit signed integer": np.int16,
                "32-bit unsigned integer": np.uint32, "32-bit signed integer": np.int32,
                "32-bit float": np.float32, "64-bit float": np.float64}


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1][:200] if lines else type(error).__name__
