"""The mammography registration study's part of the suite's smoke run: the variants' table, Wilcoxon table,
claims, figures, and cells traced to the raw DICOMs."""

import numpy as np
import pandas as pd
import pytest
from rocrate.rocrate import ROCrate

from medrepro.provenance.crate import export_crate

from support.crate_trace import as_list, trace
from support.smoke import assert_figures, explain_cell


@pytest.mark.slow
def test_smoke_mammo_registration_tables_are_complete_and_finite(smoke_run):
    from medrepro.studies.mammo_registration.evaluation import EVAL_COLUMNS
    from medrepro.studies.mammo_registration.tables import TABLE_COLUMNS, WILCOXON_COLUMNS

    table = pd.read_csv(smoke_run / "tables/mammo_registration.csv")
    assert list(table.columns) == TABLE_COLUMNS
    assert list(table["method"]) == ["unregistered", "prior", "elastix", "mse", "masked_mse", "masked_mse_giou"]
    assert np.isfinite(table.drop(columns=["method", "overlap_rate_seed_sd"]).to_numpy(dtype=float)).all()
    assert table.set_index("method")["n_seeds"].to_dict() == {"unregistered": 1, "prior": 1, "elastix": 1, "mse": 2,
                                                               "masked_mse": 2, "masked_mse_giou": 2}
    for method in table["method"]:
        per_pair = pd.read_csv(smoke_run / f"mammo_registration/eval/{method}.csv")
        assert list(per_pair.columns[:len(EVAL_COLUMNS)]) == EVAL_COLUMNS
        assert np.isfinite(per_pair[EVAL_COLUMNS[1:]].to_numpy(dtype=float)).all(), method
    wilcoxon = pd.read_csv(smoke_run / "tables/mammo_registration_wilcoxon.csv")
    assert list(wilcoxon.columns) == WILCOXON_COLUMNS and len(wilcoxon) == 2 * 15  # 2 metrics x C(6, 2)
    claims = pd.read_csv(smoke_run / "tables/claims.csv")
    mammo = claims[claims["study"] == "mammo_registration"]
    assert len(mammo) == 6 and set(mammo["metric"]) == {"overlap", "giou_loss"}
    assert "66.7%" in (smoke_run / "tables/mammo_registration.md").read_text()


@pytest.mark.slow
def test_smoke_mammo_registration_cells_trace_to_the_raw_dicoms(smoke_run, tmp_path):
    for table, row, column, rules in (
        ("mammo_registration.csv", "masked_mse_giou", "overlap_rate",
         ("mammo_registration_table", "mammo_registration_gather_seeds", "mammo_registration_evaluate_learned",
          "mammo_registration_train", "mammo_registration_pretrain_detector", "mammo_registration_prepare",
          "mammo_registration_obtain", "mammo_registration_synthesize")),
        ("mammo_registration_wilcoxon.csv", "giou_loss/elastix/masked_mse_giou", "p_bonferroni",
         ("mammo_registration_wilcoxon", "mammo_registration_evaluate_elastix", "mammo_registration_prepare",
          "mammo_registration_synthesize")),
    ):
        expl = explain_cell(smoke_run, table, row, column, rules)
        assert any(s["path"].endswith("raw/CBIS-DDSM") for s in expl["steps"]), [s["path"] for s in expl["steps"]]
    crate = ROCrate(export_crate(smoke_run / "provenance", tmp_path / "provenance.crate.zip", results_dir=smoke_run))
    table = pd.read_csv(smoke_run / "tables/mammo_registration.csv").set_index("method")
    number = crate.get("#mammo_registration.csv/masked_mse_giou/giou_loss_mean")
    assert number["value"] == table.loc["masked_mse_giou", "giou_loss_mean"]
    visited, actions, _ = trace(crate, as_list(number["isBasedOn"]))
    rules = {a["name"].split("[")[0] for a in actions}
    assert {"mammo_registration_evaluate_learned", "mammo_registration_train", "mammo_registration_prepare",
            "mammo_registration_synthesize"} <= rules
    raw = [e for e in crate.get_by_type("Dataset")
           if e.id in visited and e.get("localPath", "").rstrip("/").endswith("raw/CBIS-DDSM")]
    assert len(raw) == 1


@pytest.mark.slow
def test_smoke_mammo_registration_figures_exist(smoke_run):
    assert_figures(smoke_run, ['mammo_registration_overlap_mask', 'mammo_registration_training_curves', 'mammo_registration_giou_histogram', 'mammo_registration_examples', 'mammo_registration_synthetic_pairs'])


def test_mammo_registration_plans_every_variant_and_seed(study_plans):
    mammo = study_plans["mammo_registration"]
    assert mammo["mammo_registration_train"] == 3 * 2  # loss variants x replicate seeds
    assert mammo["mammo_registration_pretrain_detector"] == 2 and mammo["mammo_registration_table"] == 1
