"""Axis-aligned 2-D boxes: overlap measures, GIoU, and boxes carried through an affine map.

Convention (shared with the affine warping in ``medrepro.spatial.warp``):

* A box is the last axis of an array or tensor, ``(..., 4)`` = ``x1, y1, x2, y2``
  in pixels, x = column, y = row, ``x1 <= x2`` and ``y1 <= y2``.
* Coordinates are continuous: an image of H rows and W columns spans
  ``[0, W] x [0, H]``; pixel (row i, column j) is the unit square
  ``[j, j + 1] x [i, i + 1]`` with its centre at ``(j + 0.5, i + 0.5)``.
* A box therefore covers the area between its edges; in index terms the far
  edge is exclusive: the box of a mask whose foreground spans columns c0..c1
  and rows r0..r1 is ``(c0, r0, c1 + 1, r1 + 1)``, its width the number of
  columns, and ``mask[y1:y2, x1:x2]`` slices exactly the box. This is MONAI's
  ``StandardMode`` (``xyxy``) with its continuous convention (``TO_REMOVE = 0``).

Functions that can enter a loss are differentiable torch code; they accept
NumPy arrays as well and then return NumPy arrays (float64). Box measures are
elementwise over broadcast leading dimensions (pairs, not all-against-all):
for an N x M table pass ``a[:, None]`` and ``b[None]``.

Degenerate (zero-area) boxes never produce NaN: an IoU whose union is zero is
0, and a GIoU whose enclosing box has zero area has no enclosure penalty
(GIoU = IoU = 0), as MONAI's ``box_giou`` gives.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medrepro.errors import DataError

ArrayLike = np.ndarray | torch.Tensor


# --- NumPy in, NumPy out; torch in, torch out --------------------------------------------------


def _as_tensors(*arrays: ArrayLike) -> tuple[list[torch.Tensor], bool]:
    """Inputs as floating tensors on one device and dtype, and whether all inputs were NumPy.

    With any torch input, its dtype and device win (NumPy inputs are converted to
    them), so gradients keep flowing; with NumPy inputs only, float64 on the CPU.
    """
    torch_inputs = [a for a in arrays if isinstance(a, torch.Tensor)]
    if torch_inputs:
        reference = torch_inputs[0]
        dtype = reference.dtype if reference.is_floating_point() else torch.get_default_dtype()
        device = reference.device
    else:
        dtype, device = torch.float64, torch.device("cpu")
    tensors = [torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a) for a in arrays]
    return [t.to(device=device, dtype=dtype) for t in tensors], not torch_inputs


def _returned(value: torch.Tensor, numpy_in: bool) -> ArrayLike:
    return value.detach().cpu().numpy() if numpy_in else value


def _check_boxes(boxes: torch.Tensor) -> torch.Tensor:
    if boxes.ndim == 0 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have a last axis of 4 (x1, y1, x2, y2), got shape {tuple(boxes.shape)}")
    return boxes


def _safe_divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``numerator / denominator`` where the denominator is positive, else 0, with finite gradients."""
    positive = denominator > 0
    return torch.where(positive, numerator / torch.where(positive, denominator, torch.ones_like(denominator)), 0.0)


# --- From masks --------------------------------------------------------------------------------


def box_from_mask(mask: ArrayLike, path: str | Path | None = None) -> np.ndarray:
    """Bounding box ``(x1, y1, x2, y2)`` (float64, far edge exclusive) of a 2-D mask's non-zero pixels.

    An empty mask has no box: it raises ``DataError`` naming ``path`` (the
    file the mask came from, when there is one).
    """
    array = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask)
    if array.ndim != 2:
        raise DataError(path, f"a mask for a bounding box must be 2-D, got shape {array.shape}")
    rows = np.flatnonzero(array.any(axis=1))
    columns = np.flatnonzero(array.any(axis=0))
    if rows.size == 0:
        raise DataError(path, "the mask has no foreground pixel, so it has no bounding box; check the mask file")
    return np.array([columns[0], rows[0], columns[-1] + 1, rows[-1] + 1], dtype=np.float64)


# --- Measures ----------------------------------------------------------------------------------


def _area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def _intersection(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    width = torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])
    height = torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])
    return width.clamp(min=0) * height.clamp(min=0)


def _enclosing_area(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    width = torch.maximum(a[..., 2], b[..., 2]) - torch.minimum(a[..., 0], b[..., 0])
    height = torch.maximum(a[..., 3], b[..., 3]) - torch.minimum(a[..., 1], b[..., 1])
    return width.clamp(min=0) * height.clamp(min=0)


def _iou_and_union(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    inter = _intersection(a, b)
    union = _area(a) + _area(b) - inter
    return _safe_divide(inter, union), union


def box_area(boxes: ArrayLike) -> ArrayLike:
    """Area ``(x2 - x1) * (y2 - y1)`` of ``(..., 4)`` boxes; an inverted side counts as 0."""
    (boxes,), numpy_in = _as_tensors(boxes)
    return _returned(_area(_check_boxes(boxes)), numpy_in)


def box_iou(a: ArrayLike, b: ArrayLike) -> ArrayLike:
    """Intersection over union of paired boxes; 0 where the union is empty."""
    (a, b), numpy_in = _as_tensors(a, b)
    iou, _ = _iou_and_union(_check_boxes(a), _check_boxes(b))
    return _returned(iou, numpy_in)


def box_giou(a: ArrayLike, b: ArrayLike) -> ArrayLike:
    """Generalised IoU (Rezatofighi et al. 2019) of paired boxes, in [-1, 1].

    ``GIoU = IoU - (C - U) / C`` with U the union and C the area of the
    smallest box enclosing both; the penalty is 0 where C is 0.
    """
    (a, b), numpy_in = _as_tensors(a, b)
    a, b = _check_boxes(a), _check_boxes(b)
    iou, union = _iou_and_union(a, b)
    enclosing = _enclosing_area(a, b)
    return _returned(iou - _safe_divide(enclosing - union, enclosing), numpy_in)


def giou_loss(a: ArrayLike, b: ArrayLike) -> ArrayLike:
    """``1 - GIoU`` of paired boxes, elementwise, in [0, 2]; 2 - U/C for disjoint boxes."""
    return 1.0 - box_giou(a, b)


def boxes_overlap(a: ArrayLike, b: ArrayLike) -> ArrayLike:
    """Whether paired boxes share a positive area (boxes that only touch do not)."""
    (a, b), numpy_in = _as_tensors(a, b)
    return _returned(_intersection(_check_boxes(a), _check_boxes(b)) > 0, numpy_in)


def box_centre(boxes: ArrayLike) -> ArrayLike:
    """Centres ``(..., 2)`` = ``((x1 + x2) / 2, (y1 + y2) / 2)``."""
    (boxes,), numpy_in = _as_tensors(boxes)
    boxes = _check_boxes(boxes)
    return _returned(0.5 * (boxes[..., :2] + boxes[..., 2:]), numpy_in)


def centre_distance(a: ArrayLike, b: ArrayLike) -> ArrayLike:
    """Euclidean distance in pixels between the centres of paired boxes."""
    (a, b), numpy_in = _as_tensors(a, b)
    offset = box_centre(_check_boxes(a)) - box_centre(_check_boxes(b))
    return _returned(torch.linalg.vector_norm(offset, dim=-1), numpy_in)


# --- Boxes through an affine map ---------------------------------------------------------------


def box_corners(boxes: ArrayLike) -> ArrayLike:
    """The four corners ``(..., 4, 2)`` as (x, y): (x1, y1), (x2, y1), (x2, y2), (x1, y2)."""
    (boxes,), numpy_in = _as_tensors(boxes)
    x1, y1, x2, y2 = _check_boxes(boxes).unbind(-1)
    corners = torch.stack(
        [torch.stack([x1, y1], -1), torch.stack([x2, y1], -1), torch.stack([x2, y2], -1), torch.stack([x1, y2], -1)],
        dim=-2,
    )
    return _returned(corners, numpy_in)


def rectify_corners(points: ArrayLike) -> ArrayLike:
    """The axis-aligned box ``(..., 4)`` enclosing points ``(..., N, 2)``: their min and max x and y."""
    (points,), numpy_in = _as_tensors(points)
    if points.ndim < 2 or points.shape[-1] != 2:
        raise ValueError(f"points must be (..., N, 2), got shape {tuple(points.shape)}")
    low = points.amin(dim=-2)
    high = points.amax(dim=-2)
    return _returned(torch.cat([low, high], dim=-1), numpy_in)


def transform_points(matrix: ArrayLike, points: ArrayLike) -> ArrayLike:
    """Apply a 2x3 affine ``p -> A p + t`` to points ``(..., N, 2)`` (x, y).

    ``matrix`` is ``(..., 2, 3)`` = ``[A | t]``; its leading dimensions broadcast
    against those of ``points``. Differentiable in both.
    """
    (matrix, points), numpy_in = _as_tensors(matrix, points)
    if matrix.ndim < 2 or matrix.shape[-2:] != (2, 3):
        raise ValueError(f"matrix must be (..., 2, 3), got shape {tuple(matrix.shape)}")
    if points.ndim < 2 or points.shape[-1] != 2:
        raise ValueError(f"points must be (..., N, 2), got shape {tuple(points.shape)}")
    linear, shift = matrix[..., :2], matrix[..., 2]
    return _returned(points @ linear.transpose(-1, -2) + shift.unsqueeze(-2), numpy_in)


def transform_boxes(matrix: ArrayLike, boxes: ArrayLike) -> ArrayLike:
    """Boxes ``(..., 4)`` carried by a 2x3 affine: the four corners mapped, then rectified.

    ``matrix`` maps the boxes' pixel frame into the target frame; its
    leading dimensions broadcast against the boxes' (for boxes (B, K, 4) and
    one matrix per sample pass ``matrix[:, None]``). A sampling matrix of
    ``medrepro.spatial.warp.affine_warp`` maps output to input pixels, so boxes of the
    warped image go through ``medrepro.spatial.warp.invert_affine`` of it.
    Differentiable in the matrix and the boxes.
    """
    (matrix, boxes), numpy_in = _as_tensors(matrix, boxes)
    corners = box_corners(_check_boxes(boxes))
    return _returned(rectify_corners(transform_points(matrix, corners)), numpy_in)
