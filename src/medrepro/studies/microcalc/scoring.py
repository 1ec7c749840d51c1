"""Whole-mammogram scores against a ground-truth calcification mask, beyond the paper's patch table (Table 1).

Per image (:func:`score_image`), the predicted mask and the true one are each labelled into calcifications and
clusters by the model's own rules (:mod:`medrepro.studies.microcalc.segmentation`: 8-connected components, more
than 5 centroids in a 1 cm square):

* ``dice``: the kernel's pixel Dice of the two masks (:func:`medrepro.metrics.overlap.dice`): 1 when both are
  empty, 0 when exactly one is.
* Calcifications: a true calcification is *detected* when a predicted one overlaps it (shares a pixel) or when
  their centroids lie at most ``match_px`` pixels apart (Euclidean; by default 5, 0.25 mm at the paper's 0.05 mm:
  a speck found beside a faint one, or a calcification split or shifted by its soft border, still counts).
  ``sensitivity`` is detected / true calcifications; ``false_positives`` counts the predicted calcifications
  that match no true one under the same rule. One predicted calcification may detect several true ones (a
  merged pair) and several may detect one (a split one): the counts are of calcifications, not of pairs.
* Clusters: a true cluster is *detected* when a predicted cluster's centroid lies in the bounding box of the
  true cluster's calcification centroids grown by ``cluster_tolerance_mm`` on every side (by default 5 mm, half
  the cluster square's side: the predicted cluster is then where a reader would look). ``cluster_sensitivity``
  is detected / true clusters; ``false_positive_clusters`` counts predicted clusters whose centroid lies in no
  true cluster's grown box.

An image without a true calcification (or cluster) has no sensitivity: NaN, which every mean leaves out, while
its false positives count as usual. An empty prediction detects nothing (sensitivity 0 where there is something
to detect) and has no false positive.

:func:`summarise_variants` turns per-image rows into one row per network variant: sensitivities pooled over the
calcifications (and clusters) of all images, means over images for the rest, and the per-image sensitivity's
mean over the images that have one.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from medrepro.metrics.overlap import dice
from medrepro.studies.microcalc.segmentation import (
    Calcifications,
    ClusterRule,
    Clusters,
    cluster_calcifications,
    label_calcifications,
)

MATCH_PX = 5.0
CLUSTER_TOLERANCE_MM = 5.0
SCORE_COLUMNS = ("dice", "true_calcifications", "predicted_calcifications", "detected_calcifications",
                 "sensitivity", "false_positives", "true_clusters", "predicted_clusters", "detected_clusters",
                 "cluster_sensitivity", "false_positive_clusters")


def overlapping_pairs(true: Calcifications, predicted: Calcifications) -> np.ndarray:
    """(k, 2) indices (true, predicted), counted from 0, of the calcifications that share a pixel."""
    both = (true.labels > 0) & (predicted.labels > 0)
    pairs = np.stack([true.labels[both], predicted.labels[both]], axis=1).astype(np.int64) - 1
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


def nearby_pairs(true: Calcifications, predicted: Calcifications, match_px: float) -> np.ndarray:
    """(k, 2) indices (true, predicted) of the calcifications whose centroids lie at most ``match_px`` apart."""
    if len(true) == 0 or len(predicted) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    close = cKDTree(true.centroids).sparse_distance_matrix(cKDTree(predicted.centroids), match_px,
                                                           output_type="ndarray")
    return np.stack([close["i"], close["j"]], axis=1).astype(np.int64)


def match_calcifications(true: Calcifications, predicted: Calcifications, match_px: float = MATCH_PX
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(detected (n_true,), matched (n_predicted,)) bool: which true calcifications a predicted one overlaps or
    lies within ``match_px`` of, and which predicted ones match a true one (the module docstring)."""
    pairs = np.concatenate([overlapping_pairs(true, predicted), nearby_pairs(true, predicted, match_px)])
    detected = np.zeros(len(true), dtype=bool)
    matched = np.zeros(len(predicted), dtype=bool)
    detected[pairs[:, 0]] = True
    matched[pairs[:, 1]] = True
    return detected, matched


def match_clusters(true: Clusters, predicted: Clusters, tolerance_px: float) -> tuple[np.ndarray, np.ndarray]:
    """(detected (m_true,), matched (m_predicted,)) bool: which true clusters hold a predicted cluster's centroid
    in their box grown by ``tolerance_px``, and which predicted clusters' centroids lie in such a box."""
    top, left = true.boxes[:, 0:1] - tolerance_px, true.boxes[:, 1:2] - tolerance_px
    bottom, right = true.boxes[:, 2:3] + tolerance_px, true.boxes[:, 3:4] + tolerance_px
    rows, cols = predicted.centroids[None, :, 0], predicted.centroids[None, :, 1]
    inside = (rows >= top) & (rows <= bottom) & (cols >= left) & (cols <= right)  # (m_true, m_predicted)
    return inside.any(axis=1), inside.any(axis=0)


def _share(hits: np.ndarray) -> float:
    """The share of True in ``hits``; NaN when there is nothing to share."""
    return float(hits.mean()) if hits.size else float("nan")


def score_image(predicted: np.ndarray, truth: np.ndarray, pixel_mm: float, match_px: float = MATCH_PX,
                cluster_tolerance_mm: float = CLUSTER_TOLERANCE_MM, rule: ClusterRule = ClusterRule()
                ) -> dict[str, float]:
    """One image's scores (:data:`SCORE_COLUMNS`, the module docstring) of a ``predicted`` binary mask against
    the ``truth`` at ``pixel_mm``."""
    predicted, truth = np.asarray(predicted, dtype=bool), np.asarray(truth, dtype=bool)
    if predicted.shape != truth.shape:
        raise ValueError(f"predicted mask {predicted.shape} and true mask {truth.shape} differ in shape")
    found, real = label_calcifications(predicted), label_calcifications(truth)
    detected, matched = match_calcifications(real, found, match_px)
    found_clusters = cluster_calcifications(found.centroids, pixel_mm, rule)
    real_clusters = cluster_calcifications(real.centroids, pixel_mm, rule)
    clusters_detected, clusters_matched = match_clusters(real_clusters, found_clusters,
                                                         cluster_tolerance_mm / pixel_mm)
    return {
        "dice": dice(predicted, truth),
        "true_calcifications": len(real),
        "predicted_calcifications": len(found),
        "detected_calcifications": int(detected.sum()),
        "sensitivity": _share(detected),
        "false_positives": int((~matched).sum()),
        "true_clusters": len(real_clusters),
        "predicted_clusters": len(found_clusters),
        "detected_clusters": int(clusters_detected.sum()),
        "cluster_sensitivity": _share(clusters_detected),
        "false_positive_clusters": int((~clusters_matched).sum()),
    }


def _pooled(detected: pd.Series, total: pd.Series) -> float:
    """Detected over total, summed over images; NaN when no image has anything to detect."""
    total = float(total.sum())
    return float(detected.sum()) / total if total > 0 else float("nan")


def variant_row(scores: pd.DataFrame) -> dict[str, float]:
    """One variant's summary of its per-image scores (the module docstring)."""
    return {
        "images": len(scores),
        "dice": float(scores["dice"].mean()),
        "sensitivity": _pooled(scores["detected_calcifications"], scores["true_calcifications"]),
        "image_sensitivity": float(scores["sensitivity"].mean(skipna=True)),
        "false_positives_per_image": float(scores["false_positives"].mean()),
        "cluster_sensitivity": _pooled(scores["detected_clusters"], scores["true_clusters"]),
        "image_cluster_sensitivity": float(scores["cluster_sensitivity"].mean(skipna=True)),
        "false_positive_clusters_per_image": float(scores["false_positive_clusters"].mean()),
        "true_calcifications": int(scores["true_calcifications"].sum()),
        "detected_calcifications": int(scores["detected_calcifications"].sum()),
        "true_clusters": int(scores["true_clusters"].sum()),
        "detected_clusters": int(scores["detected_clusters"].sum()),
    }


def summarise_variants(rows: pd.DataFrame | Iterable[Mapping], by: str = "variant") -> pd.DataFrame:
    """One row per value of ``by`` (the network variant), in order of first appearance, from per-image rows of
    :func:`score_image` with a ``by`` column: pooled sensitivities, means over images, NaN sensitivities (images
    with nothing to detect) left out of the means."""
    scores = pd.DataFrame(rows) if not isinstance(rows, pd.DataFrame) else rows
    missing = [c for c in (by, *SCORE_COLUMNS) if c not in scores.columns]
    if missing:
        raise ValueError(f"per-image scores lack the column(s) {', '.join(missing)}")
    summary = [{by: key, **variant_row(group)} for key, group in scores.groupby(by, sort=False)]
    return pd.DataFrame(summary)
