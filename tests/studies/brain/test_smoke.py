"""The brain registration study's part of the suite's smoke run: the per-landmark files, Table 1 and the Wilcoxon
table complete and finite (the GPU column empty without a GPU), the claims, the submission files, the figures,
and a cell of each table traced to the raw NIfTI and landmark files."""

import json

import numpy as np
import pandas as pd
import pytest
from rocrate.rocrate import ROCrate

from medrepro.provenance.crate import export_crate

from support.crate_trace import as_list, trace
from support.smoke import assert_figures, crate_cell, explain_cell

FIGURES = ("brain_synthetic", "brain_examples", "brain_jacobians", "brain_landmark_errors", "brain_training_curves")
METHODS = ["unregistered", "ants", "voxelmorph", "wssamnet", "wssamnet_no_attention"]


@pytest.mark.slow
def test_smoke_brain_tables_and_files_are_complete_and_finite(smoke_run):
    from medrepro.studies.brain.tables import TABLE_COLUMNS

    table = pd.read_csv(smoke_run / "tables/brain_registration.csv")
    assert list(table.columns) == TABLE_COLUMNS and list(table["method"]) == METHODS
    assert np.isfinite(table.drop(columns=["method", "runtime_gpu_s"]).to_numpy(float)).all()
    assert table["runtime_gpu_s"].isna().all()  # no GPU in the suite
    unregistered = table.set_index("method").loc["unregistered"]
    assert unregistered["runtime_cpu_s"] == 0 and unregistered["mean_robustness"] == 0
    for suffix in ("md", "tex"):
        text = (smoke_run / f"tables/brain_registration.{suffix}").read_text()
        assert "WSSAMNet" in text and "(5.00)" in text
    for method in METHODS:
        errors = pd.read_csv(smoke_run / f"brain/eval/{method}.csv")
        assert list(errors.columns[:4]) == ["case", "landmark", "error_before_mm", "error_after_mm"]
        assert np.isfinite(errors[["error_before_mm", "error_after_mm"]].to_numpy()).all()
    wilcoxon = pd.read_csv(smoke_run / "tables/brain_registration_wilcoxon.csv")
    assert len(wilcoxon) == 10 and (wilcoxon["p_bonferroni"] <= 1).all()
    submission = smoke_run / "brain/submission/seed0/wssamnet"
    csvs = sorted(submission.glob("*.csv"))
    assert csvs and all((submission / f"{p.stem}_detj.nii.gz").exists() for p in csvs)
    assert csvs[0].read_text().startswith("Landmark,X,Y,Z\n")
    claims = pd.read_csv(smoke_run / "tables/claims.csv")
    brain = claims[claims["study"] == "brain"]
    assert len(brain) == 11 and set(brain["verdict"]) <= {"holds", "contradicted", "inconclusive"}
    assert_figures(smoke_run, FIGURES)


CELLS = [
    ("brain_registration.csv", "wssamnet", "median_of_median_ae",
     ("brain_registration_table", "brain_evaluate_learned", "brain_train", "brain_pretrain", "brain_prepare",
      "brain_synthesize")),
    ("brain_registration_wilcoxon.csv", "median_error_mm/ants/wssamnet", "p_value",
     ("brain_wilcoxon", "brain_evaluate_classical", "brain_evaluate_learned", "brain_prepare", "brain_synthesize")),
]


@pytest.mark.slow
@pytest.mark.parametrize("table, row, column, rules", CELLS)
def test_smoke_brain_cells_trace_to_the_raw_files(smoke_run, table, row, column, rules):
    text = json.dumps(explain_cell(smoke_run, table, row, column, rules))
    assert "raw/BraTS-Reg" in text and "prepared" in text


@pytest.mark.slow
def test_smoke_brain_cells_trace_to_the_raw_files_in_the_crate(smoke_run, tmp_path):
    crate = ROCrate(export_crate(smoke_run / "provenance", tmp_path / "provenance.crate.zip", results_dir=smoke_run))
    for table, row, column, rules in CELLS:
        number = crate_cell(crate, smoke_run, table, row, column)
        visited, actions, _ = trace(crate, as_list(number["isBasedOn"]))
        assert set(rules[1:]) <= {a["name"].split("[")[0] for a in actions}, (table, rules)
        raw = [e for e in crate.get_by_type("Dataset")
               if e.id in visited and e.get("localPath", "").rstrip("/").endswith("raw/BraTS-Reg")]
        assert len(raw) == 1, table
