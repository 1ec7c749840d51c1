"""From a DDSM view to the base image of the paper: one orientation, a crop right-aligned on the nipple, masks.

As in the paper, every scan is flipped to one orientation (here the chest wall on the left, the nipple pointing
right) and cropped, without downsampling, to a square region right-aligned on the nipple: the nipple's column is
the crop's last, its row the crop's middle. The nipple is the breast outline's point farthest from the chest
wall. The breast is the largest region darker (less dense) than the film's background on the optical-density
scale (Otsu's threshold), so that labels and scanner borders are left out. Parts of the crop outside the scan
are filled with the background's density.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from medrepro.errors import DataError
from medrepro.spatial.threshold import otsu_threshold


@dataclass(frozen=True)
class Placement:
    """Where a view's crop lies: flipped first (``flipped``: columns reversed), then ``top``/``left`` (may be
    negative) of a ``size`` x ``size`` square; ``nipple`` (row, col) in the flipped view."""

    flipped: bool
    top: int
    left: int
    size: int
    nipple: tuple[int, int]

    def to_crop(self, rows: np.ndarray, cols: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        """View pixel coordinates (row, col) -> crop coordinates (``width`` the view's columns)."""
        cols = width - 1 - np.asarray(cols) if self.flipped else np.asarray(cols)
        return np.asarray(rows) - self.top, cols - self.left


def breast_mask(density: np.ndarray) -> np.ndarray:
    """The breast: the largest region below Otsu's threshold of optical density, holes filled."""
    foreground = density < otsu_threshold(density)
    foreground = ndi.binary_opening(foreground, iterations=2)
    labels, count = ndi.label(foreground)
    if count == 0:
        raise ValueError("no breast region below the background's density")
    sizes = ndi.sum_labels(np.ones_like(labels), labels, index=np.arange(1, count + 1))
    return ndi.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))


def chest_wall_on_right(mask: np.ndarray) -> bool:
    """Whether the chest wall (where the breast meets the image edge) is at the right: more breast there."""
    band = max(1, mask.shape[1] // 20)
    return bool(mask[:, -band:].sum() > mask[:, :band].sum())


def find_nipple(mask: np.ndarray) -> tuple[int, int]:
    """(row, col) of the nipple in a breast mask with the chest wall on the left: the outline's rightmost point
    (the middle row of the rows that reach within 1 % of the image width of the breast's farthest column)."""
    cols = np.flatnonzero(mask.any(axis=0))
    if not cols.size:
        raise ValueError("an empty breast mask has no nipple")
    far = int(cols[-1])
    reach = np.array([np.flatnonzero(row)[-1] if row.any() else -1 for row in mask])
    rows = np.flatnonzero(reach >= far - max(1, mask.shape[1] // 100))
    return int(np.round(np.median(rows))), far


def place(density: np.ndarray, size: int, path=None) -> Placement:
    """The crop of ``size`` native pixels for a view's optical density: flipped to the chest wall on the left,
    right-aligned on the nipple and centred on its row."""
    try:
        mask = breast_mask(density)
    except ValueError as exc:
        raise DataError(path, f"no breast found: {exc}") from exc
    flipped = chest_wall_on_right(mask)
    if flipped:
        mask = mask[:, ::-1]
    row, col = find_nipple(mask)
    return Placement(flipped=flipped, top=row - size // 2, left=col + 1 - size, size=size, nipple=(row, col))


def crop(image: np.ndarray, placement: Placement, fill: float) -> np.ndarray:
    """The placement's square of ``image`` (flipped as it says), ``fill`` where it leaves the image."""
    image = image[:, ::-1] if placement.flipped else image
    size = placement.size
    out = np.full((size, size), fill, dtype=image.dtype)
    top, left = placement.top, placement.left
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + size, image.shape[0]), min(left + size, image.shape[1])
    if r1 > r0 and c1 > c0:
        out[r0 - top:r1 - top, c0 - left:c1 - left] = image[r0:r1, c0:c1]
    return out


def downsample(image: np.ndarray, size: int) -> np.ndarray:
    """Area-average a square image to ``size`` x ``size`` (a magnification of the base image)."""
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    return torch.nn.functional.interpolate(tensor, size=(size, size), mode="area")[0, 0].numpy()


def magnified_size(base: int, magnification: float) -> int:
    """The side of the base image at a magnification (x0.5 of 2048: 1024; x0.33: 683)."""
    return int(round(base * magnification))
