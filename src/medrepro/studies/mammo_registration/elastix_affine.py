"""The conventional baseline: an elastix affine registration of each CC onto its MLO.

elastix (itk-elastix) registers the CC (moving) onto the MLO (fixed) with an
affine transform, Mattes mutual information (the views differ in compression
and intensity), a three-level pyramid and adaptive stochastic gradient
descent on randomly drawn samples (``elastix/affine.txt``).

Regions. Each view is cleaned to its breast region (everything outside set
to air, 0), so film labels and scanner edges cannot drive the metric, and the
MLO region is elastix's fixed mask: samples are drawn in the MLO's tissue
only. The CC region is deliberately *not* a moving mask: elastix then drops
every sample that leaves the CC's tissue, and mutual information over the
shrinking overlap rewards sliding the CC off the MLO (on synthetic CBIS-DDSM
pairs the region overlap fell below the start's); with the cleaned CC, MLO
tissue over CC air is instead a mismatch the metric sees.

Start. Like the learned variants, elastix starts from the network's 45-degree
prior (``prior=False``: from the identity). The CC is first resampled with
the start affine ``P`` (:func:`medrepro.spatial.warp.affine_warp`) onto the MLO's grid
*padded* on every side until it holds the whole turned CC, so that no tissue
is cut away before elastix sees it; the MLO and its region are padded with
air (outside the fixed mask, so the padding never enters the metric).

Coordinates. The project's pixel affine maps an MLO position ``p`` to the CC
position it samples, in pixel-edge coordinates (pixel (row r, col c) covers
``[c, c + 1) x [r, r + 1)``, x = column). elastix works in physical
``(x, y) = (col, row)`` with pixel *centres* at integer indices (origin 0,
spacing 1, identity direction), so an edge position ``p`` is the elastix
point ``p - h`` with ``h = (0.5, 0.5)``. elastix's affine maps a fixed point
to a moving point: ``T(e) = A (e - c) + c + t`` with ``TransformParameters``
``a11 a12 a21 a22 tx ty`` and ``CenterOfRotationPoint`` ``c``. In edge
coordinates it is therefore::

    q = T(p - h) + h = A p + (t + c + h - A (c + h))

the pixel affine ``[A | t + c + h - A (c + h)]`` (:func:`pixel_affine_from_elastix`).
Between the padded grid and the MLO grid lies the shift ``o = (left, top)``
(padded position = MLO position + o), so the affine returned for a pair is

    M = P o Shift(-o) o T_pixel o Shift(+o)

(MLO position -> padded position -> elastix's match on the padded grids ->
back by ``-o`` -> the CC through the start affine).

Failures. When elastix raises on a pair (e.g. too few valid samples) or a
breast region is empty, that pair gets the start affine ``P`` and a warning
naming the pair index; a closing log line counts these fallbacks.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from medrepro.spatial import elastix, warp
from medrepro.errors import DataError
from medrepro.pipeline.progress import progress_bar

from .networks import centred_to_pixel, prior_parameters

log = logging.getLogger(__name__)

PARAMETER_FILE = Path(__file__).resolve().parent / "elastix" / "affine.txt"
# Air kept around the turned CC on the padded grid, so interpolation at its border reads defined values.
PAD_MARGIN = 4
_HALF = np.array([0.5, 0.5])


def default_parameter_map() -> dict:
    """The shipped parameter map (``elastix/affine.txt``)."""
    return elastix.load_parameter_map(PARAMETER_FILE)


# --------------------------------------------------------------- affine algebra
def _homogeneous(matrix: np.ndarray) -> np.ndarray:
    return np.vstack([np.asarray(matrix, dtype=np.float64), [0.0, 0.0, 1.0]])


def _compose(*matrices: np.ndarray) -> np.ndarray:
    """``matrices[0] o matrices[1] o ...`` as one (2, 3) affine (the last one acts first)."""
    out = np.eye(3)
    for matrix in matrices:
        out = out @ _homogeneous(matrix)
    return out[:2]


def _shift(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])


def start_affine(cc_shape, mlo_shape, prior: bool = True) -> np.ndarray:
    """The (2, 3) pixel affine elastix starts from: the network's prior, or the identity."""
    if not prior:
        return np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    params = prior_parameters().to(torch.float64).reshape(1, 2, 3)
    return centred_to_pixel(params, tuple(cc_shape), tuple(mlo_shape))[0].numpy()


def pixel_affine_from_elastix(transform_map: dict) -> np.ndarray:
    """An elastix 2-D ``AffineTransform`` map -> the (2, 3) pixel-edge affine (fixed -> moving position)."""
    kind = transform_map.get("Transform", ["?"])[0]
    if kind != "AffineTransform":
        raise ValueError(f"expected an elastix AffineTransform, got {kind}")
    a11, a12, a21, a22, tx, ty = (float(v) for v in transform_map["TransformParameters"])
    linear = np.array([[a11, a12], [a21, a22]])
    centre = np.array([float(v) for v in transform_map.get("CenterOfRotationPoint", ["0", "0"])])
    offset = np.array([tx, ty]) + centre + _HALF - linear @ (centre + _HALF)
    return np.column_stack([linear, offset])


# ------------------------------------------------------------------ padded grid
def _padding(cc_shape, mlo_shape, start: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) pixels to add to the MLO grid so it holds the CC turned by ``start``."""
    height, width = cc_shape
    corners = np.array([[0, 0, 1], [width, 0, 1], [0, height, 1], [width, height, 1]], dtype=np.float64)
    inverse = np.linalg.inv(_homogeneous(start))
    on_mlo = corners @ inverse[:2].T  # CC corners seen on the MLO grid
    (x_low, y_low), (x_high, y_high) = on_mlo.min(axis=0), on_mlo.max(axis=0)
    mlo_height, mlo_width = mlo_shape
    return (max(0, math.ceil(-x_low)) + PAD_MARGIN, max(0, math.ceil(-y_low)) + PAD_MARGIN,
            max(0, math.ceil(x_high - mlo_width)) + PAD_MARGIN, max(0, math.ceil(y_high - mlo_height)) + PAD_MARGIN)


def _onto_padded_grid(image: np.ndarray, matrix: np.ndarray, shape) -> np.ndarray:
    tensor = torch.from_numpy(np.asarray(image, dtype=np.float32))[None, None]
    return warp.affine_warp(tensor, torch.from_numpy(matrix), shape)[0, 0].numpy()


# ----------------------------------------------------------------- registration
def _register_one(cc, mlo, cc_region, mlo_region, pmap: dict, start: np.ndarray, threads: int) -> np.ndarray:
    """One pair's pixel affine (may raise what elastix raises)."""
    left, top, right, bottom = _padding(cc.shape, mlo.shape, start)
    padded_shape = (mlo.shape[0] + top + bottom, mlo.shape[1] + left + right)
    to_cc = _compose(start, _shift(-left, -top))  # padded position -> CC position
    moving = _onto_padded_grid(np.where(cc_region, cc, 0.0), to_cc, padded_shape)
    pad = ((top, bottom), (left, right))
    fixed = np.pad(np.where(mlo_region, mlo, 0.0).astype(np.float32), pad)
    fixed_region = np.pad(mlo_region, pad)
    result = elastix.register(fixed, moving, pmap, threads=threads, fixed_mask=fixed_region)
    if len(result.transform) != 1:
        raise RuntimeError(f"expected one elastix transform map, got {len(result.transform)}")
    found = pixel_affine_from_elastix(result.transform[0])
    return _compose(to_cc, found, _shift(left, top))


def _load_itk() -> None:
    """Load itk's elastix module now (~15 s): the first pair's time is then its registration alone."""
    import itk

    itk.ElastixRegistrationMethod  # itk loads lazily, on first attribute access


def _check_stacks(cc, mlo, cc_region, mlo_region) -> tuple[np.ndarray, ...]:
    arrays = {"cc": cc, "mlo": mlo, "cc_region": cc_region, "mlo_region": mlo_region}
    arrays = {name: np.asarray(value) for name, value in arrays.items()}
    for name, value in arrays.items():
        if value.ndim != 3:
            raise DataError(None, f"{name} must be an (N, H, W) stack, got shape {value.shape}")
    counts = {value.shape[0] for value in arrays.values()}
    if len(counts) != 1:
        raise DataError(None, "cc, mlo, cc_region and mlo_region hold different numbers of pairs; "
                              "pass the arrays of one pairs.npz")
    for view in ("cc", "mlo"):
        if arrays[f"{view}_region"].shape != arrays[view].shape:
            raise DataError(None, f"{view}_region {arrays[f'{view}_region'].shape} does not match "
                                  f"{view} {arrays[view].shape}; give the region on its view's grid")
        if not np.all(np.isfinite(arrays[view])):
            raise DataError(None, f"{view} holds NaN or infinite values; re-run the preprocessing")
    return arrays["cc"], arrays["mlo"], arrays["cc_region"] != 0, arrays["mlo_region"] != 0


def register_pairs(cc: np.ndarray, mlo: np.ndarray, cc_region: np.ndarray, mlo_region: np.ndarray, *,
                   parameter_map: dict | None = None, seed: int = 0, iterations: int | None = None,
                   resolutions: int | None = None, threads: int = 1, prior: bool = True,
                   progress: bool = True) -> tuple[np.ndarray, list[float]]:
    """(N, 2, 3) float64 pixel affines (MLO output position -> CC input position, pixel-edge coordinates) and the seconds each pair took.

    ``parameter_map`` defaults to :func:`default_parameter_map`; ``seed``,
    ``iterations``, ``resolutions`` and ``threads`` are applied on top
    (:func:`medrepro.spatial.elastix.with_overrides`; ``None`` keeps the map's
    value). The same inputs, seed and thread count give identical matrices.
    A pair elastix fails on keeps the start affine (see the module doc).
    """
    cc, mlo, cc_region, mlo_region = _check_stacks(cc, mlo, cc_region, mlo_region)
    base = default_parameter_map() if parameter_map is None else parameter_map
    pmap = elastix.with_overrides(base, seed=seed, iterations=iterations, resolutions=resolutions, threads=threads)
    start = start_affine(cc.shape[1:], mlo.shape[1:], prior)
    if len(cc):
        _load_itk()
    matrices = np.empty((len(cc), 2, 3))
    seconds: list[float] = []
    fallbacks = 0
    for index in progress_bar(range(len(cc)), enabled=progress, desc="elastix affine", unit="pair"):
        began = time.perf_counter()
        matrices[index] = start
        if not cc_region[index].any() or not mlo_region[index].any():
            log.warning("pair %d: a breast region is empty; kept the start affine", index)
            fallbacks += 1
        else:
            try:
                matrices[index] = _register_one(cc[index], mlo[index], cc_region[index], mlo_region[index],
                                                pmap, start, threads)
            except RuntimeError as exc:  # one failing pair must not stop the run
                reason = (str(exc).strip().splitlines() or ["no message"])[-1]
                log.warning("pair %d: elastix failed (%s); kept the start affine", index, reason)
                fallbacks += 1
        seconds.append(time.perf_counter() - began)
    level = logging.WARNING if fallbacks else logging.INFO
    log.log(level, "elastix affine: %d of %d pairs fell back to the start affine", fallbacks, len(cc))
    return matrices, seconds
