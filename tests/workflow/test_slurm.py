"""The workflow on SLURM: profiles/slurm, planned and run on a single-node test cluster.

The cluster (tests/workflow/slurm/cluster.sh: slurmctld, slurmd and munged on this machine,
two stand-in GPUs, no accounting) needs root and the slurm-wlm and munge packages.
Without them the cluster tests are skipped, except under CI=true, where they fail.

One SLURM run of the smoke workflow serves every cluster test. Two faults are
injected into it while it runs (see :class:`support.slurm_run.FaultInjector`): a job
whose process is killed, and a training job cancelled after its first checkpoint.
The run must still complete, with the same tables as the uninterrupted local smoke
run. It starts with the session and runs beside the other tests (tests/conftest.py).
"""

import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pandas as pd
import pytest
import torch
from rocrate.rocrate import ROCrate

from medrepro.provenance import records as provenance
from medrepro.provenance.crate import export_crate
from medrepro.pipeline.planning import dry_run
from medrepro.nn.training.checkpoint import load_torch

from conftest import REPO, snakemake
from support.crate_trace import as_list, trace
from support.slurm_run import Unavailable, site_free_environment

# GPU rules of the studies the SLURM run executes, and of every study (the profile's dry runs plan them all).
RUN_GPU_RULES = {"chest_train_autoencoder", "chest_train_registration", "chest_evaluate_learned", "cxr14_segment",
                 "cxr14_rca", "cxr14_rca_validation", "cxr14_features"}
GPU_RULES = RUN_GPU_RULES | {"mammo_registration_pretrain_detector", "mammo_registration_train",
                             "mammo_registration_evaluate_learned", "mammo_tissue_train_classifier",
                             "mammo_tissue_evaluate_classifier", "mammo_tissue_aggregate", "mammo_tissue_train_heatmap",
                             "mammo_tissue_evaluate_heatmap", "mammo_tissue_saliency", "microcalc_train",
                             "microcalc_evaluate_patches", "microcalc_segment", "brain_pretrain", "brain_train",
                             "brain_evaluate_learned"}
# The tables of the studies the SLURM run leaves out (RUN_STUDIES in tests/support/slurm_run.py): the mammography,
# tissue classifier, microcalcification and brain registration studies.
LOCAL_ONLY_TABLES = ("mammo_", "microcalc_", "brain_")
# Groups of profiles/slurm whose members share one cluster job in the smoke run.
ONE_JOB_GROUPS = {
    "chest_data": {"chest_synthesize", "chest_obtain", "chest_convert"},
    "cxr14_data": {"cxr14_synthesize", "cxr14_obtain", "cxr14_manifest"},
    "report": {"chest_registration_table", "chest_registration_wilcoxon", "chest_claims", "claims", "chest_figure_dice",
               "chest_figure_examples", "chest_figure_training_curves", "chest_figure_anatomical_loss",
               "chest_figure_synthetic", "cxr14_figure_rca", "cxr14_figure_published_rca",
               "cxr14_figure_rca_validation"},
}


# ------------------------------------------------------------ planning only
def planned_resources(output: str) -> dict[str, list[dict]]:
    """rule -> resources of each planned job, from a verbose dry run."""
    jobs: dict[str, list[dict]] = defaultdict(list)
    rule = None
    for line in output.splitlines():
        match = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if match:
            rule = match.group(1)
        elif line.strip().startswith("resources:") and rule:
            pairs = (item.split("=", 1) for item in line.split(":", 1)[1].split(", "))
            jobs[rule].append({k.strip(): v.strip() for k, v in pairs})
            rule = None
    return jobs


def test_profile_takes_site_settings_from_the_environment(tmp_path):
    env = site_free_environment(MEDREPRO_SLURM_ACCOUNT="proj-42", MEDREPRO_SLURM_PARTITION="cpu-short",
                                MEDREPRO_SLURM_GPU_PARTITION="gpu-a100")
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--verbose", "--profile", "profiles/slurm",
                             "--configfile", "config/smoke.yaml", "--config", f"results_dir={tmp_path}/r"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_resources(result.stdout + result.stderr)
    assert GPU_RULES <= set(jobs), sorted(jobs)
    for rule, resources in jobs.items():
        for res in resources:
            assert res["slurm_account"] == "proj-42", (rule, res)
            if rule in GPU_RULES:
                assert res["gpu"] == "1" and res["slurm_partition"] == "gpu-a100", (rule, res)
            else:
                assert "gpu" not in res and res["slurm_partition"] == "cpu-short", (rule, res)
    assert jobs["chest_train_registration"][0]["cpus_per_gpu"] == "4"
    assert jobs["cxr14_svm"][0]["mem_mb"] == "64000"


def test_profile_without_site_settings_leaves_them_to_slurm(tmp_path):
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--verbose", "--profile", "profiles/slurm",
                             "--configfile", "config/smoke.yaml", "--config", f"results_dir={tmp_path}/r"],
                            cwd=REPO, env=site_free_environment(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for rule, resources in planned_resources(result.stdout + result.stderr).items():
        for res in resources:
            assert res["slurm_account"] == res["slurm_partition"] == "", (rule, res)


# ------------------------------------------------------------ the SLURM run
@pytest.fixture(scope="module")
def slurm_run(slurm_smoke_run):
    """The SLURM run that started with the session (tests/support/slurm_run.py), once it has finished."""
    if slurm_smoke_run is None:
        pytest.fail("the session started no SLURM run although a selected test needs it (see tests/conftest.py)")
    try:
        return slurm_smoke_run.result()
    except Unavailable as reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"SLURM test cluster unavailable under CI=true: {reason}")
        pytest.skip(f"SLURM test cluster unavailable: {reason}")


def slurm_job(job_id: str, slurm_conf: str) -> dict:
    """slurmctld's view of a job (kept MinJobAge seconds after it ended: no accounting here)."""
    out = subprocess.run(["scontrol", "-o", "show", "job", job_id], env={**os.environ, "SLURM_CONF": slurm_conf},
                         capture_output=True, text=True, check=True).stdout
    return dict(item.split("=", 1) for item in out.split() if "=" in item)


@pytest.mark.slow
def test_every_job_ran_in_a_slurm_job_on_the_node(slurm_run, tmp_path):
    expected, _ = dry_run(slurm_run.config, tmp_path / "r")
    expected = {rule: n for rule, n in expected.items() if rule not in ("all", "total")}
    assert Counter(r["rule"] for r in slurm_run.records) == expected
    for rec in slurm_run.records:
        host = rec["host"]
        assert host.get("slurm_job_id", "").isdigit(), (rec["rule"], host)
        assert host.get("slurm_node") == "localhost" and host.get("slurm_cluster_name") == "medrepro-test", host
    job_ids = {r["host"]["slurm_job_id"] for r in slurm_run.records}
    for job_id in job_ids:  # the plugin's log of each cluster job is kept
        assert list(slurm_run.slurm_logs.glob(f"**/{job_id}.log")), job_id


@pytest.mark.slow
def test_groups_share_cluster_jobs(slurm_run):
    by_rule = defaultdict(set)
    for rec in slurm_run.records:
        by_rule[rec["rule"]].add(rec["host"]["slurm_job_id"])
    for group, rules in ONE_JOB_GROUPS.items():
        assert len(set().union(*(by_rule[r] for r in rules))) == 1, (group, {r: by_rule[r] for r in rules})
    # per dataset, method and seed: training and evaluation
    learned = defaultdict(set)
    for rec in slurm_run.records:
        if rec["rule"] in ("chest_train_registration", "chest_evaluate_learned"):
            wildcards = rec["wildcards"]
            learned[rec["host"]["slurm_job_id"]].add((rec["rule"], wildcards["dataset"], wildcards["method"],
                                                      wildcards["seed"]))
    assert len(learned) == 3 * 4 * 2 and all(len({k[1:] for k in keys}) == 1 and len(keys) == 2
                                      for keys in learned.values()), learned
    prepare = defaultdict(set)  # per dataset: pre-alignment, folds, unregistered baseline
    for rec in slurm_run.records:
        if rec["rule"] in ("chest_prealign", "chest_split", "chest_evaluate_unregistered"):
            prepare[rec["wildcards"]["dataset"]].add(rec["host"]["slurm_job_id"])
    assert len(prepare) == 3 and all(len(ids) == 1 for ids in prepare.values()), prepare
    n_jobs = len({r["host"]["slurm_job_id"] for r in slurm_run.records})
    assert n_jobs <= len(slurm_run.records) // 2, (n_jobs, len(slurm_run.records))


@pytest.mark.slow
def test_gpu_rules_were_given_a_gpu_and_the_others_none(slurm_run):
    seen = set()
    for rec in slurm_run.records:
        host, gpu_rule = rec["host"], rec["resources"].get("gpu") == 1
        assert gpu_rule == (rec["rule"] in RUN_GPU_RULES), rec["rule"]
        if gpu_rule:
            seen.add(rec["rule"])
            assert host.get("slurm_gpus_on_node") == "1", (rec["rule"], host)
        else:
            assert "slurm_gpus_on_node" not in host, (rec["rule"], host)
    assert seen == RUN_GPU_RULES
    # and what was asked of SLURM: a GPU (with one CPU) for the GPU rules' jobs only
    gpu_jobs = {r["host"]["slurm_job_id"] for r in slurm_run.records if r["rule"] in RUN_GPU_RULES}
    for job_id in {r["host"]["slurm_job_id"] for r in slurm_run.records}:
        job = slurm_job(job_id, slurm_run.slurm_conf)
        assert job["JobState"] == "COMPLETED" and job["NumCPUs"] == "1", job
        if job_id in gpu_jobs:
            assert job.get("TresPerJob") == "gres:gpu:1" and job.get("CpusPerTres") == "gres:gpu:1", job
        else:
            assert "gpu" not in job.get("TresPerJob", "") + job.get("TRES", ""), job


@pytest.mark.slow
def test_slurm_run_results_and_cell_provenance(slurm_run):
    table = pd.read_csv(slurm_run.results / "tables/chest_registration.csv")
    assert len(table) == 3 * 6 and table["dsc_mean"].between(0, 1).all()
    svm = pd.read_csv(slurm_run.results / "tables/cardiomegaly_svm.csv")
    assert svm["representation"].tolist() == ["pca32", "ae32", "ctr_threshold"]
    expl = provenance.explain_cell(slurm_run.results / "provenance", slurm_run.results / "tables/chest_registration.csv",
                                   "JSRT/AC-RegNet", "dsc_mean")
    text = provenance.format_explanation(expl, verbose_packages=False)
    assert re.search(r"slurm job \d+ node localhost", text), text[:3000]


# ------------------------------------------------------------ faults
def record_of(records: list[dict], rule: str, **wildcards) -> dict:
    (match,) = [r for r in records if r["rule"] == rule and r["wildcards"] == wildcards]
    return match


@pytest.mark.slow
def test_both_faults_hit_and_only_their_jobs_were_retried(slurm_run):
    faults = slurm_run.faults
    assert faults.killed is not None, "no RCA shard process was found to kill"
    assert faults.cancelled is not None, "no training was caught between its first checkpoint and its end"
    assert slurm_job(faults.killed["job_id"], slurm_run.slurm_conf)["JobState"] == "FAILED"
    assert slurm_job(faults.cancelled["job_id"], slurm_run.slurm_conf)["JobState"] == "CANCELLED"
    # Snakemake resubmitted exactly these two jobs (retries: 1), nothing else failed
    assert slurm_run.output.count("Trying to restart job") == 2, slurm_run.output[-6000:]
    # and could show the logs of both, cut where the job died (progress bars are ASCII)
    assert "is not a text file" not in slurm_run.output


@pytest.mark.slow
def test_a_failed_job_is_retried_and_the_workflow_completes(slurm_run):
    killed = slurm_run.faults.killed
    rerun = record_of(slurm_run.records, "cxr14_rca", shard=killed["shard"])["host"]["slurm_job_id"]
    assert rerun != killed["job_id"]
    assert slurm_job(rerun, slurm_run.slurm_conf)["JobState"] == "COMPLETED"
    scores = pd.read_csv(slurm_run.results / "tables/rca_validation.csv")
    assert len(scores) and scores.notna().all().all()


@pytest.mark.slow
def test_a_training_cancelled_mid_run_resumes_from_its_checkpoint(slurm_run, smoke_run):
    cancelled = slurm_run.faults.cancelled
    dataset, method, seed, step = (cancelled[k] for k in ("dataset", "method", "seed", "checkpoint_step"))
    record = record_of(slurm_run.records, "chest_train_registration", dataset=dataset, seed=seed, method=method)
    steps = record["params"]["training"]["steps"]
    assert 0 < step < steps
    assert record["host"]["slurm_job_id"] != cancelled["job_id"]
    training = record["extra"]["training"]
    assert training["resumed_from_step"] == step and training["steps_run"] == steps - step
    models = slurm_run.results / "chest" / dataset / "models" / f"seed{seed}"
    assert not (slurm_run.results / "chest" / dataset / "checkpoints" / f"seed{seed}" / f"{method}.ckpt").exists()
    losses = pd.read_csv(models / f"{method}.losses.csv")
    assert losses.loc[losses["split"] == "train", "step"].tolist() == list(range(1, steps + 1))
    # the resumed network is the network an uninterrupted run trains
    resumed = load_torch(models / f"{method}.pt")["state_dict"]
    uninterrupted = load_torch(smoke_run / "chest" / dataset / "models" / f"seed{seed}" / f"{method}.pt")["state_dict"]
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        assert torch.equal(resumed[name], uninterrupted[name]), name


@pytest.mark.slow
def test_no_half_written_output_is_taken_as_finished(slurm_run, smoke_run):
    # every recorded output is on disk as recorded
    for rec in slurm_run.records:
        for out in rec["outputs"]:
            assert provenance.describe_path(REPO / out["path"])["sha256"] == out["sha256"], (rec["rule"], out["path"])
    # Snakemake finds nothing incomplete or out of date
    result = snakemake("-n", "--configfile", slurm_run.config, "--config", f"results_dir={slurm_run.results}")
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr, result.stderr[-3000:]
    # and the faults changed no number: every table as in the uninterrupted local run (which ran every study)
    tables = sorted(p.name for p in (slurm_run.results / "tables").iterdir())
    local_tables = (p.name for p in (smoke_run / "tables").iterdir() if not p.name.startswith(LOCAL_ONLY_TABLES))
    assert tables == sorted(local_tables)
    for name in tables:
        ours, local = slurm_run.results / "tables" / name, smoke_run / "tables" / name
        if name == "claims.csv":  # the local run's also holds the studies the SLURM run left out
            local_rows = pd.read_csv(local)
            pd.testing.assert_frame_equal(pd.read_csv(ours),
                                          local_rows[local_rows["study"].isin(["chest", "cxr14"])].reset_index(drop=True))
        else:
            assert ours.read_bytes() == local.read_bytes(), name


@pytest.mark.slow
def test_every_file_of_the_slurm_run_has_the_local_runs_bytes(slurm_run, smoke_run):
    """Two runs of one config, on two executors and with two faults in one of them, write the same bytes: the
    suite's determinism check for the studies the SLURM run executes (tests/workflow/test_determinism.py
    rebuilds every study's probes)."""
    compared, differing = 0, []
    for path in sorted(slurm_run.results.rglob("*")):
        relative = path.relative_to(slurm_run.results)
        if not path.is_file() or relative.parts[0] in ("logs", "provenance") or relative == Path("tables/claims.csv"):
            continue  # logs and records hold times and hosts; claims.csv is compared row by row above
        compared += 1
        local = smoke_run / relative
        if not local.is_file() or local.read_bytes() != path.read_bytes():
            differing.append(relative.as_posix())
    assert compared > 100 and differing == []


# ------------------------------------------------------------ RO-Crate of the SLURM run
def action_id(record: dict) -> str:
    """The crate's id of a job's action: #job/<rule>[/<name>=<value>,...], wildcards sorted by name."""
    wildcards = ",".join(f"{k}={v}" for k, v in sorted(record["wildcards"].items()))
    return f"#job/{record['rule']}/{wildcards}" if wildcards else f"#job/{record['rule']}"


@pytest.mark.slow
def test_crate_of_the_slurm_run_traces_a_number_to_its_raw_files(slurm_run, tmp_path):
    out = export_crate(slurm_run.results / "provenance", tmp_path / "provenance.crate.zip",
                       results_dir=slurm_run.results)
    crate = ROCrate(out)
    assert len(crate.get_by_type("CreateAction")) == len(slurm_run.records) + 1
    table = pd.read_csv(slurm_run.results / "tables/chest_registration.csv")
    row = table[(table["dataset"] == "JSRT") & (table["method"] == "AC-RegNet")]
    number = crate.get("#chest_registration.csv/JSRT/AC-RegNet/dsc_mean")
    assert number["value"] == row["dsc_mean"].item()

    visited, actions, _ = trace(crate, as_list(number["isBasedOn"]))
    rules = {a["name"].split("[")[0] for a in actions}
    assert {"chest_evaluate_learned", "chest_train_registration", "chest_convert", "chest_synthesize"} <= rules
    assert all("Montgomery" not in a.id and "Shenzhen" not in a.id for a in actions)
    raw = [e for e in crate.get_by_type("Dataset") if e.id in visited and e.get("localPath", "").rstrip("/")
           .endswith("raw/JSRT")]
    assert len(raw) == 1
    assert raw[0]["sha256"] == provenance.describe_path(slurm_run.results / "raw/JSRT")["sha256"]
    # each action names the SLURM job and node it ran in, as its record does
    job_ids = {action_id(r): r["host"]["slurm_job_id"] for r in slurm_run.records}
    for action in actions:
        env = {p["name"]: p["value"] for p in as_list(action.get("environment"))}
        assert env["SLURMD_NODENAME"] == "localhost" and env["SLURM_CLUSTER_NAME"] == "medrepro-test", action.id
        assert str(env["SLURM_JOB_ID"]) == job_ids[action.id], action.id
