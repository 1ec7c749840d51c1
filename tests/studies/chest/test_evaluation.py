"""The chest study's per-pair scores: per-label Dice, HD and ASSD against medpy, and their per-pair means."""

import numpy as np
import pandas as pd
import pytest
from medpy.metric import binary as medpy_binary

from medrepro.errors import DataError
from medrepro.studies.chest.evaluation import pair_means, resolve_spacing, score_pair

from support.masks import medpy_assd_040, smooth_blob


class TestPairs:
    def test_score_pair_matches_per_label_medpy(self):
        rng = np.random.default_rng(21)
        ref = np.zeros((60, 60), np.uint8)
        pred = np.zeros((60, 60), np.uint8)
        for label in (1, 2, 3):
            ref[smooth_blob(rng, (60, 60), level=0.8)] = label
            pred[smooth_blob(rng, (60, 60), level=0.8)] = label
        rows = score_pair(pred, ref, [1, 2, 3], (0.35, 0.35))
        assert [r["label"] for r in rows] == [1, 2, 3]
        for row in rows:
            p, r = pred == row["label"], ref == row["label"]
            assert row["dsc"] == pytest.approx(medpy_binary.dc(p, r))
            assert row["hd"] == pytest.approx(medpy_binary.hd(p, r, (0.35, 0.35)))
            assert row["assd"] == pytest.approx(medpy_assd_040(p, r, (0.35, 0.35)))

    def test_score_pair_shape_mismatch(self):
        with pytest.raises(ValueError, match="shape"):
            score_pair(np.zeros((4, 4)), np.zeros((5, 4)), [1])

    def test_resolve_spacing(self):
        assert resolve_spacing(None) == (None, "px")
        assert resolve_spacing(np.array([np.nan, np.nan])) == (None, "px")
        assert resolve_spacing(np.array([0.35, 0.35])) == ((0.35, 0.35), "mm")

    def test_pair_means_skips_and_counts_undefined_distances(self):
        per_class = pd.DataFrame(
            {
                "dataset": ["JSRT"] * 5,
                "method": ["m"] * 5,
                "moving": ["a", "a", "a", "b", "b"],
                "fixed": ["c", "c", "c", "c", "c"],
                "label": [1, 2, 3, 1, 2],
                "dsc": [0.9, 0.8, 0.0, 0.5, 0.7],
                "hd": [10.0, 20.0, np.nan, 3.0, 5.0],
                "assd": [1.0, 2.0, np.nan, 0.5, 1.5],
                "distance_unit": ["mm"] * 5,
            }
        )
        means = pair_means(per_class)
        assert list(means.columns) == [
            "dataset", "method", "moving", "fixed", "dsc", "hd", "assd", "n_labels", "n_undefined", "distance_unit"
        ]
        first = means.iloc[0]
        assert first["dsc"] == pytest.approx((0.9 + 0.8 + 0.0) / 3)
        assert first["hd"] == pytest.approx(15.0)
        assert first["assd"] == pytest.approx(1.5)
        assert first["n_labels"] == 3 and first["n_undefined"] == 1
        second = means.iloc[1]
        assert second["hd"] == pytest.approx(4.0) and second["n_undefined"] == 0

    def test_pair_means_without_dataset_and_method_columns(self):
        per_class = pd.DataFrame(
            {"moving": ["a", "a"], "fixed": ["b", "b"], "label": [1, 2], "dsc": [0.5, 1.0], "hd": [1.0, 3.0], "assd": [1.0, 2.0]}
        )
        means = pair_means(per_class)
        assert means.loc[0, "dsc"] == pytest.approx(0.75)
        assert "dataset" not in means.columns

    def test_pair_means_missing_column_names_source(self):
        with pytest.raises(DataError, match="eval.csv.*missing column"):
            pair_means(pd.DataFrame({"moving": ["a"]}), source="eval.csv")

    def test_pair_means_rejects_mixed_units(self):
        per_class = pd.DataFrame(
            {"moving": ["a", "a"], "fixed": ["b", "b"], "label": [1, 2], "dsc": [0.5, 1.0],
             "hd": [1.0, 3.0], "assd": [1.0, 2.0], "distance_unit": ["mm", "px"]}
        )
        with pytest.raises(DataError, match="distance units"):
            pair_means(per_class)
