"""The whole-mammogram model (the paper's Sec. 2.1): the Detector finds candidate windows, the Segmentator
classifies every pixel in them, the mask is labelled into calcifications and these are grouped into clusters.

* **Breast**: Otsu's threshold (:func:`medrepro.studies.microcalc.patches.breast_mask`); background pixels are
  excluded from every later step, as the paper does to keep the Detector cheap.
* **Windows**: ``N`` x ``N`` (``N`` the Detector's patch) at a stride of ``N // 2`` along each axis, from the
  top-left corner, plus one flush with the bottom (right) edge where the stride does not end there, so that the
  windows cover the image and never leave it. The paper overlaps them by ``N / 2``, not a whole number for the
  odd ``N`` a patch needs; the stride ``N // 2`` (24 for 49) makes the overlap at least that (25 pixels). A window
  is examined when it holds at least one breast pixel: every breast pixel then lies in an examined window, the
  skin line included (where the paper's Fig. 7 finds errors), while windows of background alone are skipped.
* **Detector**: each examined window is one patch, the ``N`` x ``N`` patch centred on the window's centre pixel
  (the window itself), classified in batches; the window is a candidate when P(calcification in the patch)
  exceeds ``detector_threshold`` (0.5: the softmax's argmax, a tie counting as negative).
* **Segmentator**: P(the central pixel is calcification) at every breast pixel of the union of the candidate
  windows, by :func:`medrepro.studies.microcalc.dense.dense_probabilities` over rectangles that partition the
  union exactly (no pixel is computed twice where windows overlap); 0 at every other pixel. Where a patch leaves
  the image its pixels are ``fill``, by default the median of the background (the intensity beyond the image's
  edge is unknown; the background is what the breast's border meets there). The mask is P > ``threshold``.
* **Calcifications**: the mask's connected components under 8-connectivity. A calcification of one or two
  pixels, or a thin curved or linear one, may touch itself only at a corner once thresholded; 4-connectivity
  would count it as several and so inflate the counts the cluster rule reads.
* **Clusters** (:class:`ClusterRule`; the paper: more than 5 calcifications in 1 cm^2, after Park et al.): a
  calcification is *clustered* when some axis-aligned square of ``side`` x ``side`` pixels (``side`` = 10 mm
  over the pixel size, rounded) holds more than 5 calcification centroids, itself included; a centroid lies in
  the pixel it rounds to. Two clustered calcifications are linked when one such square holds both, and a
  cluster is a connected group of linked calcifications (so overlapping dense squares that share a calcification
  make one cluster). The squares are counted with summed-area tables over an image of the centroids.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from torch import nn

from medrepro.errors import ConfigError, DataError
from medrepro.studies.microcalc.dense import DEFAULT_BATCH, dense_probabilities, patch_probabilities
from medrepro.studies.microcalc.networks import MicrocalcNet, positive_probability
from medrepro.studies.microcalc.patches import breast_mask, cut_patches
from medrepro.studies.microcalc.resample import PAPER_PIXEL_MM

THRESHOLD = 0.5
CONNECTIVITY = np.ones((3, 3), dtype=bool)  # 8-connectivity (module docstring)


def require_eval(*models: nn.Module) -> None:
    """ValueError unless every model is in eval mode: batch norm must use its running statistics, so that a
    window's or pixel's output does not depend on the others in its batch."""
    if any(model.training for model in models):
        raise ValueError("the whole-mammogram model needs its networks in eval mode (call model.eval())")


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# ---- windows and the Detector ---------------------------------------------------------------------------------

def window_starts(length: int, size: int) -> np.ndarray:
    """First pixels of the ``size``-pixel windows along an axis of ``length``: every ``size // 2`` from 0, plus one
    ending at the edge when the stride does not; empty when the axis is shorter than a window."""
    if length < size:
        return np.zeros(0, dtype=np.int64)
    starts = np.arange(0, length - size + 1, size // 2, dtype=np.int64)
    if starts[-1] != length - size:
        starts = np.append(starts, length - size)
    return starts


def summed_area_table(image: np.ndarray, dtype=np.int64) -> np.ndarray:
    """(H + 1, W + 1) table whose (i, j) is the sum of ``image[:i, :j]``."""
    table = np.zeros((image.shape[0] + 1, image.shape[1] + 1), dtype=dtype)
    table[1:, 1:] = image
    np.cumsum(table, axis=1, out=table)  # in place: several times faster than into a view of the table
    np.cumsum(table, axis=0, out=table)
    return table


def rectangle_sums(table: np.ndarray, top, bottom, left, right) -> np.ndarray:
    """Sums of the image over rows ``[top, bottom)`` and columns ``[left, right)`` (arrays alike) from its
    :func:`summed_area_table`."""
    return table[bottom, right] - table[top, right] - table[bottom, left] + table[top, left]


@dataclass(frozen=True)
class Windows:
    """The examined ``size`` x ``size`` windows: top-left corners, the Detector's P(calcification in the window)
    and whether it made the window a candidate."""

    size: int
    tops: np.ndarray
    lefts: np.ndarray
    probability: np.ndarray
    candidate: np.ndarray

    def __len__(self) -> int:
        return len(self.tops)

    @property
    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) of the windows' central pixels: where the Detector's patches are centred."""
        half = self.size // 2
        return self.tops + half, self.lefts + half


def breast_windows(breast: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(tops, lefts) of the windows holding at least one breast pixel, in row-major order."""
    tops, lefts = np.meshgrid(window_starts(breast.shape[0], size), window_starts(breast.shape[1], size),
                              indexing="ij")
    tops, lefts = tops.ravel(), lefts.ravel()
    table = summed_area_table(np.asarray(breast, dtype=np.int32))
    keep = rectangle_sums(table, tops, tops + size, lefts, lefts + size) > 0
    return tops[keep], lefts[keep]


@torch.inference_mode()
def window_probabilities(detector: nn.Module, image: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                         batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """(n,) float32 P(positive) of the patches centred on (rows, cols), cut and classified ``batch_size`` at a
    time (cutting them all at once would hold every window of a mammogram in memory)."""
    device = _device(detector)
    out = np.empty(len(rows), dtype=np.float32)
    for start in range(0, len(rows), batch_size):
        stop = start + batch_size
        batch = cut_patches(image, rows[start:stop], cols[start:stop], detector.patch)
        logits = detector(torch.from_numpy(batch)[:, None].to(device))
        out[start:stop] = positive_probability(logits).cpu().numpy()
    return out


def candidate_windows(detector: nn.Module, image: np.ndarray, breast: np.ndarray,
                      threshold: float = THRESHOLD, batch_size: int = DEFAULT_BATCH) -> Windows:
    """The Detector over the windows that hold breast (``N`` = ``detector.patch``); candidates where its
    probability exceeds ``threshold``."""
    require_eval(detector)
    size = detector.patch
    tops, lefts = breast_windows(breast, size)
    half = size // 2
    probability = window_probabilities(detector, np.asarray(image), tops + half, lefts + half, batch_size)
    return Windows(size, tops, lefts, probability, probability > threshold)


def window_union(shape: tuple[int, int], tops: np.ndarray, lefts: np.ndarray, size: int) -> np.ndarray:
    """(H, W) bool: the pixels inside any of the windows (+1 at each window's top-left, -1 past its corners, and
    a running sum along both axes)."""
    marks = np.zeros((shape[0] + 1, shape[1] + 1), dtype=np.int32)
    for rows, cols, sign in ((tops, lefts, 1), (tops + size, lefts, -1), (tops, lefts + size, -1),
                             (tops + size, lefts + size, 1)):
        np.add.at(marks, (rows, cols), sign)
    return np.cumsum(np.cumsum(marks, axis=0), axis=1)[:shape[0], :shape[1]] > 0


# ---- the Segmentator ----------------------------------------------------------------------------------------------

def covering_rectangles(covered: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(top, bottom, left, right), half-open, of rectangles that partition the ``True`` pixels of ``covered``:
    each run of identical rows is cut into its runs of ``True`` columns. For a union of windows these are few."""
    covered = np.asarray(covered, dtype=bool)
    height = covered.shape[0]
    if height == 0:
        return []
    changes = np.flatnonzero((covered[1:] != covered[:-1]).any(axis=1)) + 1
    bounds = np.concatenate([[0], changes, [height]])
    rectangles = []
    for top, bottom in zip(bounds[:-1], bounds[1:]):
        row = np.concatenate([[False], covered[top], [False]])
        edges = np.flatnonzero(row[1:] != row[:-1])
        rectangles += [(int(top), int(bottom), int(left), int(right)) for left, right in zip(edges[::2], edges[1::2])]
    return rectangles


def shrink_to(mask: np.ndarray, rectangle: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
    """The bounding box (top, bottom, left, right) of ``mask``'s pixels inside ``rectangle``; None if none."""
    top, bottom, left, right = rectangle
    part = mask[top:bottom, left:right]
    rows, cols = np.flatnonzero(part.any(axis=1)), np.flatnonzero(part.any(axis=0))
    if rows.size == 0:
        return None
    return top + int(rows[0]), top + int(rows[-1]) + 1, left + int(cols[0]), left + int(cols[-1]) + 1


def background_level(image: np.ndarray, breast: np.ndarray) -> float:
    """The median intensity outside the breast (the image's minimum when the breast fills it): the default
    ``fill`` of patches that leave the image."""
    outside = np.asarray(image)[~breast]
    return float(np.median(outside)) if outside.size else float(np.min(image))


def region_probabilities(model: nn.Module, image: np.ndarray, fill: float, region: tuple[slice, slice],
                         batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """P(positive) of the patch centred at every pixel of ``region``: densely for a :class:`MicrocalcNet`, patch
    by patch (the reference) for any other module with a ``patch`` size that maps (B, 1, N, N) patches to (B, 2)
    logits."""
    if isinstance(model, MicrocalcNet):
        return dense_probabilities(model, image, fill, region, batch_size=batch_size)
    return patch_probabilities(model, image, fill, region, batch_size=batch_size)


def segmentator_probabilities(segmentator: nn.Module, image: np.ndarray, breast: np.ndarray,
                              candidates: np.ndarray, fill: float, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """(H, W) float32: the Segmentator's P(calcification) at every breast pixel of ``candidates`` (the union of
    the candidate windows), 0 elsewhere."""
    require_eval(segmentator)
    image = np.asarray(image)
    inside = np.asarray(candidates, dtype=bool) & breast
    probability = np.zeros(image.shape, dtype=np.float32)
    for rectangle in covering_rectangles(candidates):
        box = shrink_to(inside, rectangle)
        if box is None:
            continue
        top, bottom, left, right = box
        region = (slice(top, bottom), slice(left, right))
        probability[region] = region_probabilities(segmentator, image, fill, region, batch_size)
    probability[~inside] = 0.0
    return probability


# ---- calcifications and clusters -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Calcifications:
    """The mask's calcifications: ``labels`` (H, W) int32 (0 background, k > 0 calcification k), their
    ``centroids`` (n, 2) (row, col) in pixels and ``areas`` (n,) in pixels, calcification k at index k - 1."""

    labels: np.ndarray
    centroids: np.ndarray
    areas: np.ndarray

    def __len__(self) -> int:
        return len(self.areas)


def label_calcifications(mask: np.ndarray) -> Calcifications:
    """The connected components of ``mask`` under 8-connectivity, with centroids and areas."""
    labels, count = ndi.label(np.asarray(mask, dtype=bool), structure=CONNECTIVITY)
    labels = labels.astype(np.int32, copy=False)
    flat = np.flatnonzero(labels)  # only the calcification pixels: a mammogram holds few
    rows, cols = np.divmod(flat, labels.shape[1])
    which = labels.ravel()[flat]
    areas = np.bincount(which, minlength=count + 1)[1:]
    sums = [np.bincount(which, weights=values, minlength=count + 1)[1:] for values in (rows, cols)]
    centroids = np.stack(sums, axis=1) / np.maximum(areas, 1)[:, None] if count else np.zeros((0, 2))
    return Calcifications(labels, centroids.astype(np.float64), areas.astype(np.int64))


@dataclass(frozen=True)
class ClusterRule:
    """A cluster: more than ``more_than`` calcification centroids in a square of ``side_mm`` x ``side_mm`` (the
    paper: more than 5 in 1 cm^2)."""

    side_mm: float = 10.0
    more_than: int = 5

    def __post_init__(self):
        if not (isinstance(self.side_mm, (int, float)) and math.isfinite(self.side_mm) and self.side_mm > 0):
            raise ConfigError(f"cluster rule: side_mm={self.side_mm!r} must be a positive length in mm")
        if isinstance(self.more_than, bool) or not isinstance(self.more_than, (int, np.integer)) \
                or self.more_than < 0:
            raise ConfigError(f"cluster rule: more_than={self.more_than!r} must be a non-negative integer")

    @classmethod
    def from_section(cls, section: Mapping) -> "ClusterRule":
        return cls(**section)

    def side_px(self, pixel_mm: float) -> int:
        """The square's side in pixels of ``pixel_mm``, rounded, at least 1 (200 at the paper's 0.05 mm)."""
        if not (isinstance(pixel_mm, (int, float)) and math.isfinite(pixel_mm) and pixel_mm > 0):
            raise ConfigError(f"cluster rule: pixel size {pixel_mm!r} must be a positive length in mm")
        return max(int(round(self.side_mm / pixel_mm)), 1)


@dataclass(frozen=True)
class Clusters:
    """Clusters of calcifications: ``membership`` (n,) the cluster index of each calcification (-1 for none);
    per cluster (numbered in the order of its first calcification) the ``centroids`` (m, 2), mean of its
    calcifications' centroids, ``sizes`` (m,) and ``boxes`` (m, 4): top, left, bottom, right of its
    calcifications' centroids (inclusive, in pixels)."""

    membership: np.ndarray
    centroids: np.ndarray
    sizes: np.ndarray
    boxes: np.ndarray

    def __len__(self) -> int:
        return len(self.sizes)


def centroid_pixels(centroids: np.ndarray) -> np.ndarray:
    """(n, 2) int64: the pixel each centroid lies in (rounded half up, so the choice does not depend on parity)."""
    return np.floor(np.asarray(centroids, dtype=np.float64).reshape(-1, 2) + 0.5).astype(np.int64)


def crowded_points(points: np.ndarray, side: int, more_than: int) -> np.ndarray:
    """Indices of the points with at least ``more_than`` others within ``side - 1`` pixels along both axes: only
    these can lie in a dense square (a square holding one point holds only such neighbours), so the others can
    be left out of the count without changing which squares are dense."""
    if len(points) == 0:
        return np.zeros(0, dtype=np.int64)
    tree = cKDTree(points)
    neighbours = tree.query_ball_point(points, r=side - 1, p=np.inf, return_length=True)
    return np.flatnonzero(neighbours - 1 >= more_than)


def dense_square_table(points: np.ndarray, side: int, more_than: int) -> np.ndarray:
    """The summed-area table of the dense squares' indicator: entry (i, j) of the indicator is whether the
    ``side`` x ``side`` square with top-left (i, j) holds more than ``more_than`` points. ``points`` are in a
    frame where each lies at least ``side - 1`` from the top-left and ``side - 1`` from the bottom-right, so that
    every square holding one lies in the frame (:func:`cluster_calcifications` shifts them so)."""
    extent = points.max(axis=0) + side  # each point's last square ends side - 1 past it
    counts = np.zeros(tuple(extent), dtype=np.int32)
    np.add.at(counts, (points[:, 0], points[:, 1]), 1)
    table = summed_area_table(counts, np.int32)
    in_square = table[side:, side:] - table[:-side, side:] - table[side:, :-side] + table[:-side, :-side]
    return summed_area_table((in_square > more_than).astype(np.int32), np.int32)


def share_dense_square(dense_table: np.ndarray, a: np.ndarray, b: np.ndarray, side: int) -> np.ndarray:
    """Whether some dense square holds both points of each pair (a[k], b[k]) (a == b: the point alone): the
    squares holding both have top-left rows in ``[max - side + 1, min]`` of the two rows, and the same for the
    columns."""
    low = np.maximum(a, b) - side + 1
    high = np.minimum(a, b) + 1
    return rectangle_sums(dense_table, low[:, 0], high[:, 0], low[:, 1], high[:, 1]) > 0


def cluster_summaries(centroids: np.ndarray, membership: np.ndarray, count: int) -> Clusters:
    """The :class:`Clusters` of the calcifications' ``centroids`` given each one's cluster index."""
    members = membership >= 0
    which, points = membership[members], centroids[members]
    sizes = np.bincount(which, minlength=count)
    means = np.stack([np.bincount(which, weights=points[:, k], minlength=count) for k in range(2)], axis=1)
    boxes = np.zeros((count, 4))
    for k in range(count):
        inside = points[which == k]
        boxes[k] = [*inside.min(axis=0), *inside.max(axis=0)]
    return Clusters(membership, means / np.maximum(sizes, 1)[:, None], sizes.astype(np.int64), boxes)


def cluster_calcifications(centroids: np.ndarray, pixel_mm: float, rule: ClusterRule = ClusterRule()) -> Clusters:
    """The clusters among calcifications with these ``centroids`` (n, 2) in pixels of ``pixel_mm``: the rule of
    the module docstring."""
    centroids = np.asarray(centroids, dtype=np.float64).reshape(-1, 2)
    side = rule.side_px(pixel_mm)
    membership = np.full(len(centroids), -1, dtype=np.int64)
    crowded = crowded_points(centroid_pixels(centroids), side, rule.more_than)
    if crowded.size == 0:
        return cluster_summaries(centroids, membership, 0)
    points = centroid_pixels(centroids)[crowded]
    points = points - points.min(axis=0) + side - 1
    table = dense_square_table(points, side, rule.more_than)
    clustered = share_dense_square(table, points, points, side)
    pairs = cKDTree(points).query_pairs(r=side - 1, p=np.inf, output_type="ndarray").reshape(-1, 2)
    pairs = pairs[share_dense_square(table, points[pairs[:, 0]], points[pairs[:, 1]], side)]
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(points), len(points)))
    _, component = connected_components(graph, directed=False)
    # Components are numbered from their lowest point, so renumbering keeps the order of first calcifications.
    _, cluster = np.unique(component[clustered], return_inverse=True)
    membership[crowded[clustered]] = cluster
    return cluster_summaries(centroids, membership, int(cluster.max()) + 1 if cluster.size else 0)


# ---- the whole mammogram ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Segmentation:
    """One mammogram through the model: the Segmentator's ``probability`` (H, W) (0 outside the candidate
    windows and the breast), the ``mask`` (probability > threshold), its ``calcifications`` and ``clusters``, the
    examined ``windows`` with the Detector's output, and the ``seconds`` it all took."""

    probability: np.ndarray
    mask: np.ndarray
    calcifications: Calcifications
    clusters: Clusters
    windows: Windows
    seconds: float


def segment_mammogram(detector: nn.Module, segmentator: nn.Module, image: np.ndarray,
                      pixel_mm: float = PAPER_PIXEL_MM, name: str = "image", threshold: float = THRESHOLD,
                      detector_threshold: float = THRESHOLD, fill: float | None = None,
                      rule: ClusterRule = ClusterRule(), batch_size: int = DEFAULT_BATCH) -> Segmentation:
    """The whole model on one mammogram (intensities as the patches were cut from, at ``pixel_mm``): breast,
    candidate windows, the Segmentator's map and mask, calcifications and clusters. ``fill``: the intensity of
    patch pixels beyond the image (None: :func:`background_level`). ``name`` names the image in errors."""
    start = time.perf_counter()
    image = np.asarray(image)
    require_eval(detector, segmentator)
    if min(image.shape) < detector.patch:
        raise DataError(name, f"the image {image.shape} is smaller than the Detector's {detector.patch} x "
                              f"{detector.patch} window")
    breast = breast_mask(image, name)
    windows = candidate_windows(detector, image, breast, detector_threshold, batch_size)
    candidates = window_union(image.shape, windows.tops[windows.candidate], windows.lefts[windows.candidate],
                              windows.size)
    fill = background_level(image, breast) if fill is None else float(fill)
    probability = segmentator_probabilities(segmentator, image, breast, candidates, fill, batch_size)
    mask = probability > threshold
    calcifications = label_calcifications(mask)
    clusters = cluster_calcifications(calcifications.centroids, pixel_mm, rule)
    return Segmentation(probability, mask, calcifications, clusters, windows, time.perf_counter() - start)
