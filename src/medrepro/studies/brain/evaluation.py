"""Registering the held-out pairs with each method and scoring them as the challenge does (Sec. 5, eqs. 6-8).

A method gives, per pair, the follow-up (moving) landmarks carried into the baseline (fixed) space and a
displacement on the fixed grid (for the Jacobian). Learned methods' fields map a fixed voxel p to the moving
point p + u(p); a follow-up landmark q goes to the p with p + u(p) = q (:func:`medrepro.spatial.points.
invert_points`). ANTs carries points with its own inverse transforms (:mod:`medrepro.spatial.ants`).

Per case and landmark the error before registration is the distance between the follow-up and the baseline
landmark, after it between the carried follow-up landmark and the baseline one, in mm. Per case (eqs. 6-8 and the
challenge): the median error (``median_kind`` "euclidean": the median Euclidean distance, the challenge's "median
Euclidean error"; "per_axis": scikit-learn's median absolute error of the n x 3 coordinates, per-axis medians
averaged), the mean error likewise, the robustness (the share of landmarks whose error after is below the one
before: the challenge's criterion for eq. 7's "successfully registered"), and the folding (the percentage of
voxels of the unpadded volume where the Jacobian determinant is <= 0). Run time is the wall time of registering
one pair and carrying its landmarks on one CPU thread (every method alike) and, for a learned method on a node
with a GPU, on the GPU as well (:func:`gpu_seconds`); the GPU column is empty otherwise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from medrepro.metrics import landmarks as landmark_metrics
from medrepro.spatial.jacobian import folding_fraction, jacobian_determinant
from medrepro.spatial.points import invert_points
from medrepro.studies.brain.preprocess import PreparedCase

LANDMARK_COLUMNS = ["case", "landmark", "error_before_mm", "error_after_mm"]
CASE_COLUMNS = ["case", "landmarks", "median_error_before_mm", "median_error_mm", "mean_error_mm", "robustness",
                "folding_pct"]
#: Run times are no output's content (an output's bytes follow from the config alone): each evaluation job keeps
#: them in its provenance record (``extra.runtimes``), from which the table takes them (:func:`with_runtimes`).
RUNTIME_COLUMNS = ["runtime_cpu_s", "runtime_gpu_s"]
INVERSION_TOLERANCE = 0.05  # voxels


@dataclass
class Registered:
    """One pair registered: the follow-up landmarks in fixed voxels, the field, the seconds it took."""

    points: np.ndarray
    displacement: np.ndarray
    seconds: float


def carry_with_field(displacement: np.ndarray, moving_points: np.ndarray) -> np.ndarray:
    return invert_points(displacement, moving_points)[0]


def identity(case: PreparedCase) -> Registered:
    return Registered(case.moving_landmarks.copy(), np.zeros((3, *case.moving.shape[1:]), np.float32), 0.0)


def with_network(network, case: PreparedCase, synchronise=None) -> Registered:
    from medrepro.studies.brain.training import predict_displacement

    start = time.perf_counter()
    displacement = predict_displacement(network, case)
    points = carry_with_field(displacement, case.moving_landmarks)
    if synchronise is not None:
        synchronise()
    return Registered(points, displacement, time.perf_counter() - start)


def with_ants(case: PreparedCase, settings, channel: int = 0) -> Registered:
    from medrepro.spatial import ants

    spacing = case.geometry.spacing
    start = time.perf_counter()
    result = ants.register_syn(_unpadded(case.fixed[channel], case.shape), _unpadded(case.moving[channel], case.shape),
                               spacing, settings)
    points = ants.moving_points_to_fixed(result, case.moving_landmarks, spacing)
    seconds = time.perf_counter() - start
    displacement = np.zeros((3, *case.moving.shape[1:]), np.float32)
    z, y, x = case.shape
    displacement[:, :z, :y, :x] = result.displacement
    return Registered(points, displacement, seconds)


def _unpadded(volume: np.ndarray, shape: tuple) -> np.ndarray:
    return np.ascontiguousarray(volume[: shape[0], : shape[1], : shape[2]])


def gpu_seconds(network, case: PreparedCase) -> float:
    """Seconds to register the pair on the GPU (the network's copy there), after one warm-up pass."""
    import torch

    with_network(network, case, torch.cuda.synchronize)
    return with_network(network, case, torch.cuda.synchronize).seconds


def score_case(case: PreparedCase, registered: Registered, median_kind: str) -> tuple[pd.DataFrame, dict]:
    """The case's per-landmark errors and its summary row (:data:`CASE_COLUMNS`)."""
    spacing = case.geometry.spacing
    before = landmark_metrics.landmark_distances(case.moving_landmarks, case.fixed_landmarks, spacing)
    after = landmark_metrics.landmark_distances(registered.points, case.fixed_landmarks, spacing)
    z, y, x = case.shape
    det = jacobian_determinant(registered.displacement[:, :z, :y, :x].astype(np.float64))
    rows = pd.DataFrame({"case": case.name, "landmark": case.ids.astype(int), "error_before_mm": before,
                         "error_after_mm": after})
    summary = {
        "case": case.name, "landmarks": len(case.ids),
        "median_error_before_mm": landmark_metrics.median_error(case.moving_landmarks, case.fixed_landmarks,
                                                                spacing, kind=median_kind),
        "median_error_mm": landmark_metrics.median_error(registered.points, case.fixed_landmarks, spacing,
                                                         kind=median_kind),
        "mean_error_mm": landmark_metrics.mean_error(registered.points, case.fixed_landmarks, spacing,
                                                     kind=median_kind),
        "robustness": landmark_metrics.robustness(before, after),
        "folding_pct": 100.0 * folding_fraction(det)}
    return rows, summary


def runtime_entry(registered: Registered, gpu: float | None) -> dict:
    """A case's run times as the evaluation job's record keeps them."""
    return {"runtime_cpu_s": registered.seconds, "runtime_gpu_s": gpu}


def with_runtimes(cases: pd.DataFrame, runtimes: dict, source) -> pd.DataFrame:
    """The per-case scores with the run times their evaluation job recorded (case -> entry); a case without one is
    an error naming the file: its record is not the one of the run that wrote it."""
    from medrepro.errors import DataError

    missing = sorted(set(cases["case"]) - set(runtimes))
    if missing:
        raise DataError(source, f"no recorded run time for case(s) {', '.join(missing[:5])}; rerun the evaluation "
                                "that wrote this file")
    rows = [runtimes[c] for c in cases["case"]]
    return cases.assign(**{column: [np.nan if r[column] is None else float(r[column]) for r in rows]
                           for column in RUNTIME_COLUMNS})


def jacobian_volume(registered: Registered, case: PreparedCase) -> np.ndarray:
    z, y, x = case.shape
    return jacobian_determinant(registered.displacement[:, :z, :y, :x].astype(np.float64)).astype(np.float32)
