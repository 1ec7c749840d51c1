"""The workflow as a whole: config validation, lint, and the smoke run end to end."""

import json
import math
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rocrate.rocrate import ROCrate

from medrepro.crate import export_crate
from medrepro.planning import dry_run, job_counts

from conftest import REPO, snakemake
from support.crate_trace import as_list, trace


def test_config_failing_the_schema_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    text = (REPO / "config/smoke.yaml").read_text().replace("image_size: 32", "image_size: 30")
    bad.write_text(text)
    result = snakemake("-n", "--configfile", str(bad))
    assert result.returncode != 0
    assert "image_size" in result.stderr + result.stdout and "multiple of 8" in result.stderr + result.stdout


def test_unknown_config_key_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "config/smoke.yaml").read_text() + "\nlearning_rat: 3\n")
    result = snakemake("-n", "--configfile", str(bad))
    assert result.returncode != 0 and "learning_rat" in result.stderr + result.stdout


def test_lint_is_clean():
    result = snakemake("--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


def test_every_config_plans(tmp_path):
    for config in ("config/config.yaml", "config/smoke.yaml"):
        result = snakemake("-n", "--configfile", config, "--config", f"results_dir={tmp_path}/r")
        assert result.returncode == 0, result.stderr


def test_paper_scale_cxr14_run_is_planned_in_few_jobs(tmp_path):
    """112,120 images in shards: a few hundred cluster jobs, planned without any image present."""
    counts, _ = dry_run("config/paper.yaml", tmp_path / "r")
    assert counts["cxr14_segment"] == counts["cxr14_rca"] == 113  # ceil(112120 / 1000)
    assert counts["total"] <= 500, counts


def smoke_config_with(tmp_path, studies: str):
    """The smoke config with another `studies:` line."""
    text = (REPO / "config/smoke.yaml").read_text()
    assert "studies: [chest, cxr14, mammo_registration]\n" in text
    text = text.replace("studies: [chest, cxr14, mammo_registration]\n", f"studies: {studies}\n")
    path = tmp_path / f"studies_{studies.strip('[]').replace(', ', '_') or 'none'}.yaml"
    path.write_text(text)
    return str(path)


def test_each_study_plans_alone(tmp_path):
    chest, _ = dry_run(smoke_config_with(tmp_path, "[chest]"), tmp_path / "a")
    assert not any(rule.startswith("cxr14") for rule in chest)
    assert chest["chest_registration_table"] == 1 and chest["chest_claims"] == 1
    assert chest["chest_train_registration"] == 4 * 3 * 2  # methods x datasets x replicate seeds
    cxr14, _ = dry_run(smoke_config_with(tmp_path, "[cxr14]"), tmp_path / "b")
    assert cxr14["cxr14_svm"] == 1 and "chest_registration_table" not in cxr14
    # only the atlas dataset's chain of the chest study, and only the models the applications use
    assert cxr14["chest_synthesize"] == 1 and cxr14["chest_train_registration"] == 1
    assert cxr14["chest_train_autoencoder"] == 1 and "chest_evaluate_learned" not in cxr14
    mammo, _ = dry_run(smoke_config_with(tmp_path, "[mammo_registration]"), tmp_path / "d")
    assert not any(rule.startswith(("chest", "cxr14")) for rule in mammo)
    assert mammo["mammo_registration_train"] == 3 * 2  # loss variants x replicate seeds
    assert mammo["mammo_registration_pretrain_detector"] == 2 and mammo["mammo_registration_table"] == 1
    all_three, _ = dry_run("config/smoke.yaml", tmp_path / "c")
    # one `all` and one `claims` rule (each solo run of chest and mammo_registration has its own); cxr14 shares
    # the atlas dataset's chain and two models with chest
    assert all_three["total"] == chest["total"] + cxr14["total"] + mammo["total"] - 2 - 1 - (
        cxr14["chest_synthesize"] + cxr14["chest_obtain"] + cxr14["chest_convert"] + cxr14["chest_prealign"]
        + cxr14["chest_split"] + 2)


def test_a_study_target_rule_plans_that_study_only(tmp_path):
    result = snakemake("-n", "--configfile", "config/smoke.yaml", "--config", f"results_dir={tmp_path}/r", "--", "chest")
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout + result.stderr)
    assert counts["chest"] == 1 and not any(rule.startswith("cxr14") for rule in counts)


def test_no_study_enabled_is_one_clear_message(tmp_path):
    result = snakemake("-n", "--configfile", smoke_config_with(tmp_path, "[]"))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "the config enables no study: list one or more of chest, cxr14, mammo_registration under `studies:`" in output


def test_an_unknown_study_is_rejected_by_the_schema(tmp_path):
    result = snakemake("-n", "--configfile", smoke_config_with(tmp_path, "[chest, brain]"))
    assert result.returncode != 0 and "brain" in result.stdout + result.stderr


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
    out = subprocess.run([sys.executable, "-m", "medrepro.cli", "provenance",
                          str(smoke_run / "tables/cardiomegaly_svm.csv"), "--row", "ae32", "--column",
                          "accuracy_mean", "--json"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    rules = [s.get("record", "") for s in json.loads(out)["steps"]]
    for rule in ("cxr14_svm", "cxr14_features", "cxr14_cohort", "cxr14_rca_scores", "cxr14_rca", "cxr14_segment",
                 "cxr14_manifest", "cxr14_obtain", "cxr14_synthesize", "cxr14_atlases", "chest_train_registration",
                 "chest_train_autoencoder"):
        assert any(r.startswith(rule) for r in rules), (rule, rules)
    out = subprocess.run([sys.executable, "-m", "medrepro.cli", "provenance",
                          str(smoke_run / "tables/cxr14_cohort.csv"), "--row", "published", "--column",
                          "qc_passed", "--json"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    paths = [s["path"] for s in json.loads(out)["steps"]]
    assert any(p.endswith("nih-cxr14-rca-dice-scores.csv") for p in paths)
    assert not any("shards" in p for p in paths)  # the published row does not depend on this run


@pytest.mark.slow
def test_smoke_figures_exist(smoke_run):
    for name in ("chest_dice_distributions", "chest_registration_examples", "chest_training_curves",
                 "chest_anatomical_loss", "chest_synthetic_examples", "cxr14_rca_histogram",
                 "cxr14_published_rca_histogram", "cxr14_rca_validation", "mammo_registration_overlap_mask",
                 "mammo_registration_training_curves", "mammo_registration_giou_histogram",
                 "mammo_registration_examples", "mammo_registration_synthetic_pairs"):
        png = smoke_run / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


@pytest.mark.slow
def test_smoke_cell_provenance_reaches_raw_files(smoke_run):
    table = smoke_run / "tables/chest_registration.csv"
    out = subprocess.run([sys.executable, "-m", "medrepro.cli", "provenance", str(table), "--row",
                          "JSRT/AC-RegNet", "--column", "dsc_mean", "--json"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    expl = json.loads(out)
    rules = [s.get("record", "") for s in expl["steps"]]
    for rule in ("chest_registration_table", "chest_evaluate_learned", "chest_train_registration",
                 "chest_train_autoencoder", "chest_split", "chest_prealign", "chest_convert", "chest_synthesize"):
        assert any(r.startswith(rule) for r in rules), (rule, rules)
    assert not any("Montgomery" in s["path"] for s in expl["steps"])  # only this row's lineage


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
        out = subprocess.run([sys.executable, "-m", "medrepro.cli", "provenance", str(smoke_run / "tables" / table),
                              "--row", row, "--column", column, "--json"], cwd=REPO, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
        expl = json.loads(out.stdout)
        recorded = [s.get("record", "") for s in expl["steps"]]
        for rule in rules:
            assert any(r.startswith(rule) for r in recorded), (table, rule, recorded)
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
def test_smoke_rerun_is_a_no_op_and_report_builds(smoke_run, tmp_path):
    result = snakemake("-n", "--configfile", "config/smoke.yaml", "--config", f"results_dir={smoke_run}")
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr
    for study in ("chest", "cxr14", "mammo_registration"):  # each study's target rule finds its outputs done
        result = snakemake("-n", "--configfile", "config/smoke.yaml", "--config", f"results_dir={smoke_run}", "--", study)
        assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr, study
    report = tmp_path / "report.zip"
    result = snakemake("--configfile", "config/smoke.yaml", "--config", f"results_dir={smoke_run}",
                       "--report", str(report))
    assert result.returncode == 0, result.stderr[-3000:]
    assert report.stat().st_size > 10_000
    with zipfile.ZipFile(report) as archive:
        in_report = {Path(name).name for name in archive.namelist()}
    tables = {p.name for p in (smoke_run / "tables").iterdir()}
    assert tables and tables <= in_report, sorted(tables - in_report)  # every table, each rendering included


def _outputs(results):
    """Every file a rule wrote, by path below the results directory (logs and records aside)."""
    return {p.relative_to(results).as_posix(): p for p in sorted(results.rglob("*"))
            if p.is_file() and p.relative_to(results).parts[0] not in ("logs", "provenance")}


def _recorded_hashes(results):
    hashes = {}
    for path in sorted((results / "provenance" / "jobs").glob("*.json")):
        record = json.loads(path.read_text())
        for entry in record["inputs"] + record["outputs"]:
            rel = entry["path"].replace(str(results), "<results>")
            hashes[(path.name, rel)] = entry.get("sha256")
    return hashes


@pytest.mark.slow
def test_two_smoke_runs_give_identical_bytes_and_recorded_hashes(smoke_run, smoke_run_again):
    first, second = _outputs(smoke_run), _outputs(smoke_run_again)
    assert sorted(first) == sorted(second)
    assert any(name.endswith(".pt") for name in first) and any(name.endswith(".png") for name in first)
    differing = [name for name in first if first[name].read_bytes() != second[name].read_bytes()]
    assert differing == []
    assert _recorded_hashes(smoke_run) == _recorded_hashes(smoke_run_again)
