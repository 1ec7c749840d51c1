"""Whole-mammogram scores on hand-built masks: pixel Dice against a hand count, calcification sensitivity and
false positives under the overlap-or-nearby rule, cluster detection in the grown box, empty masks both ways, and
the per-variant summary (pooled sensitivity, NaN left out of the means)."""

import math

import numpy as np
import pandas as pd
import pytest

from medrepro.studies.microcalc import scoring
from medrepro.studies.microcalc.segmentation import Clusters

PIXEL_MM = 0.25  # a 1 cm square is 40 pixels: small masks hold clusters


def _mask(shape=(80, 80), pixels=()):
    mask = np.zeros(shape, dtype=bool)
    for r, c in pixels:
        mask[r, c] = True
    return mask


def test_dice_is_the_kernel_dice_of_the_masks():
    truth = _mask(pixels=[(10, 10), (10, 11), (11, 10), (11, 11), (30, 30), (31, 30)])  # 6 pixels
    predicted = _mask(pixels=[(10, 10), (10, 11), (30, 30), (50, 50)])  # 4 pixels, 3 shared
    assert scoring.score_image(predicted, truth, PIXEL_MM)["dice"] == pytest.approx(2 * 3 / (6 + 4))


def test_calcifications_are_detected_by_overlap_or_a_nearby_centroid():
    truth = _mask(pixels=[(10, 10), (10, 11), (11, 10), (11, 11),  # A: a 2 x 2 blob
                          (30, 30),  # B
                          (50, 50)])  # C
    predicted = _mask(pixels=[(11, 11), (11, 12),  # overlaps A
                              (30, 33),  # 3 pixels from B: within 5
                              (50, 58),  # 8 pixels from C: too far at 5
                              (70, 10)])  # nowhere near
    scores = scoring.score_image(predicted, truth, PIXEL_MM)
    assert (scores["true_calcifications"], scores["predicted_calcifications"]) == (3, 4)
    assert scores["detected_calcifications"] == 2 and scores["sensitivity"] == pytest.approx(2 / 3)
    assert scores["false_positives"] == 2
    wider = scoring.score_image(predicted, truth, PIXEL_MM, match_px=8.0)
    assert wider["sensitivity"] == 1.0 and wider["false_positives"] == 1


def test_one_predicted_calcification_may_detect_two_true_ones():
    truth = _mask(pixels=[(20, 20), (20, 22)])
    predicted = _mask(pixels=[(20, 20), (20, 21), (20, 22)])
    scores = scoring.score_image(predicted, truth, PIXEL_MM, match_px=0.5)
    assert scores["detected_calcifications"] == 2 and scores["false_positives"] == 0


def test_empty_masks_both_ways():
    empty, some = _mask(), _mask(pixels=[(10, 10), (40, 40)])
    both = scoring.score_image(empty, empty, PIXEL_MM)
    assert both["dice"] == 1.0 and math.isnan(both["sensitivity"]) and both["false_positives"] == 0
    assert math.isnan(both["cluster_sensitivity"]) and both["false_positive_clusters"] == 0
    missed = scoring.score_image(empty, some, PIXEL_MM)
    assert missed["dice"] == 0.0 and missed["sensitivity"] == 0.0 and missed["false_positives"] == 0
    invented = scoring.score_image(some, empty, PIXEL_MM)
    assert invented["dice"] == 0.0 and math.isnan(invented["sensitivity"]) and invented["false_positives"] == 2


def _cluster_pixels(top, left):
    """Six single-pixel calcifications within 30 pixels (7.5 mm at 0.25 mm): a cluster."""
    return [(top + r, left + c) for r, c in [(0, 0), (0, 30), (30, 0), (30, 30), (15, 15), (8, 22)]]


def test_a_true_cluster_is_detected_by_a_predicted_cluster_near_it():
    truth = _mask((200, 200), _cluster_pixels(20, 20))
    near = scoring.score_image(_mask((200, 200), _cluster_pixels(25, 23)), truth, PIXEL_MM)
    assert (near["true_clusters"], near["predicted_clusters"], near["detected_clusters"]) == (1, 1, 1)
    assert near["cluster_sensitivity"] == 1.0 and near["false_positive_clusters"] == 0
    far = scoring.score_image(_mask((200, 200), _cluster_pixels(120, 120)), truth, PIXEL_MM)
    assert far["cluster_sensitivity"] == 0.0 and far["false_positive_clusters"] == 1
    scattered = scoring.score_image(_mask((200, 200), _cluster_pixels(20, 20)[:5]), truth, PIXEL_MM)
    assert scattered["predicted_clusters"] == 0 and scattered["cluster_sensitivity"] == 0.0


def _clusters(centroids, boxes):
    centroids, boxes = np.asarray(centroids, dtype=float).reshape(-1, 2), np.asarray(boxes, dtype=float).reshape(-1, 4)
    return Clusters(np.zeros(0, dtype=np.int64), centroids, np.full(len(centroids), 6), boxes)


def test_cluster_match_uses_the_box_grown_by_the_tolerance():
    true = _clusters([[15, 15]], [[10, 10, 20, 20]])  # top, left, bottom, right
    predicted = _clusters([[24, 15], [15, 26], [35, 35]], [[0, 0, 0, 0]] * 3)
    detected, matched = scoring.match_clusters(true, predicted, tolerance_px=5.0)
    assert detected.tolist() == [True] and matched.tolist() == [True, False, False]
    detected, matched = scoring.match_clusters(_clusters([], []), predicted, 5.0)
    assert detected.size == 0 and not matched.any()


def test_variants_pool_sensitivity_and_leave_nan_out_of_means():
    keys = ("dice", "true_calcifications", "detected_calcifications", "sensitivity", "false_positives",
            "true_clusters", "detected_clusters", "cluster_sensitivity", "false_positive_clusters")
    rows = [dict(zip(keys, values), variant=variant, predicted_calcifications=0, predicted_clusters=0)
            for variant, values in [("same", (0.8, 10, 9, 0.9, 2, 1, 1, 1.0, 0)),
                                    ("same", (0.4, 2, 0, 0.0, 4, 0, 0, np.nan, 1)),
                                    ("same", (1.0, 0, 0, np.nan, 0, 0, 0, np.nan, 0)),
                                    ("valid", (0.5, 4, 2, 0.5, 1, 2, 1, 0.5, 3))]]
    summary = scoring.summarise_variants(rows).set_index("variant")
    assert summary.index.tolist() == ["same", "valid"]
    same = summary.loc["same"]
    assert same["images"] == 3 and same["dice"] == pytest.approx((0.8 + 0.4 + 1.0) / 3)
    assert same["sensitivity"] == pytest.approx(9 / 12)  # pooled over calcifications
    assert same["image_sensitivity"] == pytest.approx(0.45)  # the image without calcification left out
    assert same["false_positives_per_image"] == pytest.approx(2.0)
    assert same["cluster_sensitivity"] == 1.0 and same["image_cluster_sensitivity"] == 1.0
    assert same["false_positive_clusters_per_image"] == pytest.approx(1 / 3)
    assert summary.loc["valid", "cluster_sensitivity"] == 0.5


def test_a_variant_with_nothing_to_detect_has_nan_sensitivity():
    row = scoring.score_image(_mask(), _mask(), PIXEL_MM)
    summary = scoring.summarise_variants([{**row, "variant": "same"}])
    assert math.isnan(summary.loc[0, "sensitivity"]) and math.isnan(summary.loc[0, "image_sensitivity"])


def test_summary_refuses_rows_without_scores():
    with pytest.raises(ValueError, match="dice"):
        scoring.summarise_variants(pd.DataFrame({"variant": ["same"]}))
