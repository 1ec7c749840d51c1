"""The chest study's part of the suite's smoke run: Table 1, its statistics and claims, figures, lineage."""

import json
import math
import subprocess
import sys

import pandas as pd
import pytest

from conftest import REPO
from support.smoke import assert_figures


@pytest.mark.slow
def test_smoke_tables_are_complete_and_finite(smoke_run):
    table = pd.read_csv(smoke_run / "tables/chest_registration.csv")
    assert list(table.columns) == ["dataset", "method", "dsc_mean", "dsc_sd", "dsc_seed_sd", "hd_mean", "hd_sd",
                                   "hd_seed_sd", "assd_mean", "assd_sd", "assd_seed_sd", "n_pairs", "n_seeds",
                                   "distance_unit"]
    assert len(table) == 3 * 6
    learned = table["method"].isin(["RegNet", "CE-RegNet", "AE-RegNet", "AC-RegNet"])
    assert set(table.loc[learned, "n_seeds"]) == {2} and set(table.loc[~learned, "n_seeds"]) == {1}
    numbers = table.drop(columns=["dsc_seed_sd", "hd_seed_sd", "assd_seed_sd"]).select_dtypes("number")
    assert all(math.isfinite(x) for x in numbers.to_numpy(dtype=float).ravel())
    seed_spread = table.loc[learned, ["dsc_seed_sd", "hd_seed_sd", "assd_seed_sd"]].to_numpy(dtype=float)
    assert all(math.isfinite(x) for x in seed_spread.ravel())  # NaN only for the methods run once
    claims = pd.read_csv(smoke_run / "tables/claims.csv")
    assert list(claims.columns) == ["study", "claim", "metric", "holds_in_seeds", "n_seeds", "p_value", "verdict"]
    chest_claims = claims[claims["study"] == "chest"]
    assert len(chest_claims) == 3 * 12 * 3 and set(claims["n_seeds"]) == {2}  # datasets x claims x metrics
    assert claims["verdict"].isin(["holds", "contradicted", "inconclusive"]).all()
    assert set(table.loc[table.dataset == "Shenzhen", "distance_unit"]) == {"px"}
    assert set(table.loc[table.dataset == "JSRT", "distance_unit"]) == {"mm"}
    wilcoxon = pd.read_csv(smoke_run / "tables/chest_registration_wilcoxon.csv")
    assert len(wilcoxon) == 3 * 3 * 15 and wilcoxon["p_bonferroni"].between(0, 1).all()
    assert (smoke_run / "tables/chest_registration.md").read_text().count("\n") > 10
    assert "\\begin{tabular}" in (smoke_run / "tables/chest_registration.tex").read_text()


@pytest.mark.slow
def test_smoke_cell_provenance_reaches_raw_files(smoke_run):
    table = smoke_run / "tables/chest_registration.csv"
    out = subprocess.run([sys.executable, "-m", "medrepro.pipeline.cli", "provenance", str(table), "--row",
                          "JSRT/AC-RegNet", "--column", "dsc_mean", "--json"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    expl = json.loads(out)
    rules = [s.get("record", "") for s in expl["steps"]]
    for rule in ("chest_registration_table", "chest_evaluate_learned", "chest_train_registration",
                 "chest_train_autoencoder", "chest_split", "chest_prealign", "chest_convert", "chest_synthesize"):
        assert any(r.startswith(rule) for r in rules), (rule, rules)
    assert not any("Montgomery" in s["path"] for s in expl["steps"])  # only this row's lineage


@pytest.mark.slow
def test_smoke_chest_figures_exist(smoke_run):
    assert_figures(smoke_run, ['chest_dice_distributions', 'chest_registration_examples', 'chest_training_curves', 'chest_anatomical_loss', 'chest_synthetic_examples'])


def test_chest_plans_every_method_dataset_and_seed(study_plans):
    chest = study_plans["chest"]
    assert chest["chest_registration_table"] == 1 and chest["chest_claims"] == 1
    assert chest["chest_train_registration"] == 4 * 3 * 2  # methods x datasets x replicate seeds
