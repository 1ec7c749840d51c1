"""Tables 2 and 3 from per-patch and per-mammogram results, against sums written out by hand."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from medrepro.studies.mammo_tissue import tables
from medrepro.studies.mammo_tissue.claims import BASELINE, LOCAL
from medrepro.studies.mammo_tissue.evaluation import image_mse


def _predictions(magnification, seed, labels, scores):
    n = len(labels)
    return pd.DataFrame({"magnification": magnification, "seed": seed, "view_id": np.arange(n), "row": 0, "col": 0,
                         "label": labels, "probability": scores})


def test_table_2_counts_percent_of_all_test_patches_and_the_auc_of_the_seeds():
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    seed0 = np.array([0.9, 0.8, 0.6, 0.2, 0.7, 0.1, 0.3, 0.4])   # TP 3, FN 1, FP 1, TN 3
    seed1 = np.array([0.9, 0.4, 0.6, 0.7, 0.2, 0.1, 0.3, 0.45])  # TP 3, FN 1, FP 0, TN 4
    predictions = pd.concat([_predictions("x0.5", 0, labels, seed0), _predictions("x0.5", 1, labels, seed1)])
    row = tables.classification_table(predictions, n_boot=200, seed=0).iloc[0]
    assert row[["tp", "fn", "fp", "tn"]].tolist() == pytest.approx([37.5, 12.5, 6.25, 43.75])
    assert row["tp"] + row["fn"] + row["fp"] + row["tn"] == pytest.approx(100.0)
    assert row["total_error"] == pytest.approx(18.75)
    assert row["auc"] == pytest.approx(np.mean([roc_auc_score(labels, seed0), roc_auc_score(labels, seed1)]))
    assert row["auc_ci_low"] <= row["auc"] <= row["auc_ci_high"]
    assert row["n_test"] == 8 and row["paper_total_error"] == 11.3


def test_table_3_gives_the_empty_heatmaps_mse_beside_each_models():
    rng = np.random.default_rng(0)
    targets = rng.uniform(0, 1, (4, 3, 3)) * (rng.uniform(size=(4, 1, 1)) < 0.5)
    empty = image_mse(np.zeros_like(targets), targets)
    assert empty == pytest.approx((targets ** 2).reshape(4, -1).mean(axis=1))
    rows = []
    for model, scale in ((BASELINE, 0.5), (LOCAL, 0.25)):
        for seed in (0, 1):
            mse = image_mse(targets * (1 - scale - 0.1 * seed), targets)
            rows.append(pd.DataFrame({"model": model, "seed": seed, "split": ["train", "train", "val", "test"],
                                      "view_id": range(4), "case": list("abcd"), "mse": mse, "mse_empty": empty}))
    table = tables.heatmap_table(pd.concat(rows)).set_index(["model", "split"])
    assert len(table) == 4 and set(table.index.get_level_values("split")) == {"train", "val"}
    for model in (BASELINE, LOCAL):
        assert table.loc[(model, "train"), "mse_empty"] == pytest.approx(empty[:2].mean())
        assert table.loc[(model, "val"), "mse_empty"] == pytest.approx(empty[2])
    baseline = np.mean([image_mse(targets[:2] * (0.5 - 0.1 * s), targets[:2]).mean() for s in (0, 1)])
    assert table.loc[(BASELINE, "train"), "mse"] == pytest.approx(baseline)
    assert table.loc[(LOCAL, "val"), "paper_mse"] == 6.04
