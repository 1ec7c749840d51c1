"""The ChestX-ray14 part of the suite's smoke run: cohort, SVM and RCA tables, figures, lineage."""

import json
import math
import subprocess
import sys

import pandas as pd
import pytest

from conftest import REPO
from support.smoke import assert_figures


@pytest.mark.slow
def test_smoke_cxr14_tables_are_complete_and_finite(smoke_run):
    cohort = pd.read_csv(smoke_run / "tables/cxr14_cohort.csv")
    assert list(cohort.columns) == ["source", "images", "qc_passed", "cardiomegaly", "healthy_sampled",
                                    "balanced_total"]
    assert cohort.set_index("source").loc["published"].tolist() == [112120, 87870, 2019, 2019, 4038]
    assert cohort.set_index("source").loc["synthetic", "images"] == 20
    svm = pd.read_csv(smoke_run / "tables/cardiomegaly_svm.csv")
    assert svm["representation"].tolist() == ["pca32", "ae32", "ctr_threshold"]
    assert svm[["accuracy_mean", "accuracy_sd"]].apply(lambda c: c.map(math.isfinite)).all().all()
    assert svm["accuracy_mean"].between(0, 1).all()
    validation = pd.read_csv(smoke_run / "tables/rca_validation.csv")
    assert len(validation) == 1 and validation["mae"].between(0, 1).all()


@pytest.mark.slow
def test_smoke_cxr14_cell_provenance_reaches_the_images(smoke_run):
    out = subprocess.run([sys.executable, "-m", "medrepro.pipeline.cli", "provenance",
                          str(smoke_run / "tables/cardiomegaly_svm.csv"), "--row", "ae32", "--column",
                          "accuracy_mean", "--json"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    rules = [s.get("record", "") for s in json.loads(out)["steps"]]
    for rule in ("cxr14_svm", "cxr14_features", "cxr14_cohort", "cxr14_rca_scores", "cxr14_rca", "cxr14_segment",
                 "cxr14_manifest", "cxr14_obtain", "cxr14_synthesize", "cxr14_atlases", "chest_train_registration",
                 "chest_train_autoencoder"):
        assert any(r.startswith(rule) for r in rules), (rule, rules)
    out = subprocess.run([sys.executable, "-m", "medrepro.pipeline.cli", "provenance",
                          str(smoke_run / "tables/cxr14_cohort.csv"), "--row", "published", "--column",
                          "qc_passed", "--json"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    paths = [s["path"] for s in json.loads(out)["steps"]]
    assert any(p.endswith("nih-cxr14-rca-dice-scores.csv") for p in paths)
    assert not any("shards" in p for p in paths)  # the published row does not depend on this run


@pytest.mark.slow
def test_smoke_cxr14_figures_exist(smoke_run):
    assert_figures(smoke_run, ['cxr14_rca_histogram', 'cxr14_published_rca_histogram', 'cxr14_rca_validation'])


def test_cxr14_alone_plans_only_the_atlas_datasets_chain_of_the_chest_study(study_plans):
    cxr14 = study_plans["cxr14"]
    assert cxr14["cxr14_svm"] == 1 and "chest_registration_table" not in cxr14
    # only the atlas dataset's chain of the chest study, and only the models the applications use
    assert cxr14["chest_synthesize"] == 1 and cxr14["chest_train_registration"] == 1
    assert cxr14["chest_train_autoencoder"] == 1 and "chest_evaluate_learned" not in cxr14
