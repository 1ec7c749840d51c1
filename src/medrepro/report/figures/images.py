"""Image panels on pixel-edge coordinates: 2-D images, a slice of a 3-D volume, two images in false colour.

Every image is drawn on the extent ``[0, W] x [H, 0]``: pixel (row r,
column c) fills ``[c, c + 1) x [r, r + 1)``, so a box ``(x1, y1, x2, y2)``
of :mod:`medrepro.spatial.boxes` is drawn at exactly its numbers and a point
``(x, y)`` is a position in pixels with pixel centres at half-integers.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def pixel_extent(shape) -> tuple[int, int, int, int]:
    """``imshow``'s extent that puts pixel edges at integers (the y axis pointing down)."""
    height, width = shape[:2]
    return 0, width, height, 0


def hide_ticks(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def show_image(ax, image: np.ndarray, cmap: str = "gray", vmin: float = 0.0, vmax: float = 1.0):
    """A 2-D image (grey in [0, 1] by default) without ticks, each pixel shown as it is (no smoothing).

    An (H, W, 3) or (H, W, 4) array is drawn as colour and ignores ``cmap``.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"an image to show must be (H, W) or (H, W, channels), got shape {image.shape}")
    shown = ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest",
                      extent=pixel_extent(image.shape))
    hide_ticks(ax)
    return shown


def volume_slice(volume: np.ndarray, axis: int = 0, index: int | None = None) -> np.ndarray:
    """The 2-D slice ``index`` of a 3-D volume along ``axis`` (the middle one when ``index`` is None)."""
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"a volume must be 3-D, got shape {volume.shape}")
    axis = int(axis)
    if not -3 <= axis < 3:
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    size = volume.shape[axis]
    index = size // 2 if index is None else int(index)
    if not 0 <= index < size:
        raise ValueError(f"slice {index} is outside the volume's {size} slices along axis {axis}")
    return np.take(volume, index, axis=axis)


def show_slice(ax, volume: np.ndarray, axis: int = 0, index: int | None = None, **kwargs):
    """One slice of a 3-D volume as :func:`show_image` draws it (the middle one by default)."""
    return show_image(ax, volume_slice(volume, axis, index), **kwargs)


#: The array axis a slice is taken along -> the (x, y, z) components that are its columns and rows.
_SLICE_PLANE = {0: (0, 1), 1: (0, 2), 2: (1, 2)}


def points_in_slice(points_xyz: np.ndarray, axis: int, index: int, depth: float) -> tuple[np.ndarray, np.ndarray]:
    """Points (x, y, z voxels) within ``depth`` voxels of slice ``index`` along array ``axis`` of a (z, y, x)
    volume, as (column, row) in :func:`volume_slice`'s image; and the mask of the points kept."""
    points = np.asarray(points_xyz, dtype=float).reshape(-1, 3)
    through = 2 - int(axis)  # array axis 0 is z, the points' third component
    keep = np.abs(points[:, through] - index) <= depth
    column, row = _SLICE_PLANE[int(axis)]
    return points[keep][:, [column, row]], keep


def show_composite(ax, fixed: np.ndarray, moving: np.ndarray):
    """Two images of one grid in false colour: ``fixed`` magenta, ``moving`` green, equal intensities grey."""
    fixed, moving = np.clip(fixed, 0.0, 1.0), np.clip(moving, 0.0, 1.0)
    if fixed.shape != moving.shape:
        raise ValueError(f"a composite needs images of one shape, got {fixed.shape} and {moving.shape}")
    return show_image(ax, np.stack([fixed, moving, fixed], axis=-1))


def fit_view(ax, shape, points=(), reach: float = 1.0) -> None:
    """Show the whole image and every point (x, y), but no further than ``reach`` image sizes beyond it.

    Shapes carried off the image (a box under a poor registration) stay in
    view with a small margin, and a wild one cannot shrink the image to a dot.
    """
    height, width = shape[:2]
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    points = points[np.isfinite(points).all(axis=1)]
    xs = np.clip(np.concatenate([[0.0, width], points[:, 0]]), -reach * width, (1 + reach) * width)
    ys = np.clip(np.concatenate([[0.0, height], points[:, 1]]), -reach * height, (1 + reach) * height)
    pad_x, pad_y = 0.02 * width, 0.02 * height
    ax.set_xlim(xs.min() - pad_x if xs.min() < 0 else 0, xs.max() + pad_x if xs.max() > width else width)
    ax.set_ylim(ys.max() + pad_y if ys.max() > height else height, ys.min() - pad_y if ys.min() < 0 else 0)


def shrink_for_display(array: np.ndarray, max_side: int, labels: bool = False) -> np.ndarray:
    """``array`` scaled down so its longer side is at most ``max_side`` (area mean; nearest for labels).

    Matplotlib's own resampling of megapixel images is very slow, and a
    label map must keep its label values.
    """
    array = np.asarray(array)
    factor = max_side / max(array.shape)
    if factor >= 1:
        return array
    size = (max(1, round(array.shape[1] * factor)), max(1, round(array.shape[0] * factor)))
    if labels:
        return np.asarray(Image.fromarray(array.astype(np.uint8)).resize(size, Image.Resampling.NEAREST))
    return np.asarray(Image.fromarray(array.astype(np.float32), mode="F").resize(size, Image.Resampling.BOX))
