"""The tissue classifier study's part of the suite's smoke run: Tables 1-3 and the saliency table complete and
finite, the claims, the figures, and a cell of each table traced to the raw .LJPEG and .OVERLAY files."""

import json

import numpy as np
import pandas as pd
import pytest
from rocrate.rocrate import ROCrate

from medrepro.provenance.crate import export_crate

from support.crate_trace import as_list, trace
from support.smoke import assert_figures, crate_cell, explain_cell

FIGURES = ("mammo_tissue_synthetic", "mammo_tissue_roc", "mammo_tissue_aggregation", "mammo_tissue_heatmaps",
           "mammo_tissue_saliency", "mammo_tissue_training_curves")


@pytest.mark.slow
def test_smoke_mammo_tissue_tables_are_complete_and_finite(smoke_run):
    from medrepro.studies.mammo_tissue.tables import CLASSIFICATION_COLUMNS

    splits = pd.read_csv(smoke_run / "tables/mammo_tissue_splits.csv")
    assert list(splits["stage"]) == ["training", "validation", "testing"]
    assert (splits[["patches_positive", "patches_negative"]] > 0).all().all()
    held = splits.set_index("stage").loc[["validation", "testing"]]
    assert (held["patches_positive"] == held["patches_negative"]).all()
    assert (held["mammograms_positive"] == held["mammograms_negative"]).all()
    table = pd.read_csv(smoke_run / "tables/mammo_tissue_classification.csv")
    assert list(table.columns[:len(CLASSIFICATION_COLUMNS)]) == CLASSIFICATION_COLUMNS
    assert list(table["magnification"]) == ["x0.5", "x0.33", "x0.25"]
    numbers = table[CLASSIFICATION_COLUMNS[1:]].to_numpy(dtype=float)
    assert np.isfinite(numbers).all()
    np.testing.assert_allclose(table[["tp", "fp", "tn", "fn"]].sum(axis=1), 100.0)
    assert ((table["auc_ci_low"] <= table["auc"]) & (table["auc"] <= table["auc_ci_high"])).all()
    mse = pd.read_csv(smoke_run / "tables/mammo_heatmap_mse.csv")
    assert len(mse) == 4 and set(mse["split"]) == {"train", "val"}
    assert np.isfinite(mse[["mse", "mse_seed_sd", "n_seeds", "mse_empty", "paper_mse"]].to_numpy(float)).all()
    saliency = pd.read_csv(smoke_run / "tables/mammo_tissue_saliency.csv")
    assert list(saliency["map"]) == ["saliency", "heatmap", "uniform"]
    assert saliency["share_inside"].between(0, 1).all()
    claims = pd.read_csv(smoke_run / "tables/claims.csv")
    tissue = claims[claims["study"] == "mammo_tissue"]
    assert len(tissue) == 7 and set(tissue["metric"]) == {"error", "auc_contribution", "mse"}
    assert_figures(smoke_run, FIGURES)


@pytest.mark.slow
@pytest.mark.parametrize("table, row, column, rules", [
    ("mammo_tissue_classification.csv", "x0.5", "auc",
     ("mammo_tissue_classification_table", "mammo_tissue_evaluate_classifier", "mammo_tissue_train_classifier",
      "mammo_tissue_sample", "mammo_tissue_prepare", "mammo_tissue_obtain", "mammo_tissue_synthesize")),
    ("mammo_heatmap_mse.csv", "+ local results (x0.5)/val", "mse",
     ("mammo_tissue_heatmap_table", "mammo_tissue_evaluate_heatmap", "mammo_tissue_train_heatmap",
      "mammo_tissue_aggregate", "mammo_tissue_prepare", "mammo_tissue_synthesize")),
    ("mammo_tissue_splits.csv", "testing", "patches_positive",
     ("mammo_tissue_splits_table", "mammo_tissue_sample", "mammo_tissue_prepare", "mammo_tissue_synthesize")),
    ("mammo_tissue_saliency.csv", "saliency", "share_inside",
     ("mammo_tissue_saliency_table", "mammo_tissue_saliency", "mammo_tissue_evaluate_heatmap",
      "mammo_tissue_prepare")),
])
def test_smoke_mammo_tissue_cells_trace_to_the_raw_files(smoke_run, table, row, column, rules):
    text = json.dumps(explain_cell(smoke_run, table, row, column, rules))
    assert ".LJPEG" in text or "raw/DDSM" in text  # down to the raw dataset


@pytest.mark.slow
def test_smoke_mammo_tissue_cells_trace_to_the_raw_files_in_the_crate(smoke_run, tmp_path):
    crate = ROCrate(export_crate(smoke_run / "provenance", tmp_path / "provenance.crate.zip", results_dir=smoke_run))
    cells = {"mammo_tissue_classification.csv": ("x0.5", "auc", "mammo_tissue_train_classifier"),
             "mammo_heatmap_mse.csv": ("+ local results (x0.5)/val", "mse", "mammo_tissue_aggregate"),
             "mammo_tissue_splits.csv": ("testing", "patches_positive", "mammo_tissue_sample"),
             "mammo_tissue_saliency.csv": ("saliency", "share_inside", "mammo_tissue_saliency")}
    for table, (row, column, made_by) in cells.items():
        number = crate_cell(crate, smoke_run, table, row, column)
        visited, actions, _ = trace(crate, as_list(number["isBasedOn"]))
        rules = {a["name"].split("[")[0] for a in actions}
        assert {made_by, "mammo_tissue_prepare", "mammo_tissue_synthesize"} <= rules, (table, rules)
        raw = [e for e in crate.get_by_type("Dataset")
               if e.id in visited and e.get("localPath", "").rstrip("/").endswith("raw/DDSM")]
        assert len(raw) == 1, table
