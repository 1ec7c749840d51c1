"""The workflow on SLURM: profiles/slurm, planned and run on a single-node test cluster.

The cluster (tests/slurm/cluster.sh: slurmctld, slurmd and munged on this machine,
two stand-in GPUs, no accounting) needs root and the slurm-wlm and munge packages.
Without them the cluster tests are skipped, except under CI=true, where they fail.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from medrepro import provenance
from medrepro.planning import dry_run

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "tests/slurm/cluster.sh"
PROFILES = ["--profile", "profiles/slurm", "--profile", "tests/slurm/profile"]
COMMANDS = ("munged", "munge", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scontrol", "srun")
SITE_VARIABLES = ("MEDREPRO_SLURM_ACCOUNT", "MEDREPRO_SLURM_PARTITION", "MEDREPRO_SLURM_GPU_PARTITION",
                  "MEDREPRO_SLURM_GPU_MODEL", "SNAKEMAKE_SLURM_PARTITIONS")
GPU_RULES = {"chest_train_autoencoder", "chest_train_registration", "chest_evaluate_learned", "cxr14_segment",
             "cxr14_rca", "cxr14_rca_validation", "cxr14_features"}
# Groups of profiles/slurm whose members share one cluster job in the smoke run.
ONE_JOB_GROUPS = {
    "chest_data": {"chest_synthesize", "chest_obtain", "chest_convert"},
    "cxr14_data": {"cxr14_synthesize", "cxr14_obtain", "cxr14_manifest"},
    "report": {"chest_registration_table", "chest_registration_wilcoxon", "chest_figure_dice",
               "chest_figure_examples", "chest_figure_training_curves", "chest_figure_anatomical_loss",
               "chest_figure_synthetic", "cxr14_figure_rca", "cxr14_figure_published_rca",
               "cxr14_figure_rca_validation"},
}


def site_free_environment(**extra) -> dict:
    """This environment without site settings of the profile or SLURM client defaults."""
    env = {k: v for k, v in os.environ.items()
           if k not in SITE_VARIABLES and not k.startswith(("SBATCH_", "SRUN_", "SALLOC_"))}
    env.update(extra)
    return env


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


# ------------------------------------------------------- the test cluster
def unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"SLURM test cluster unavailable under CI=true: {reason}")
    pytest.skip(f"SLURM test cluster unavailable: {reason}")


def cluster(*args: str, env: dict, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CLUSTER), *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def slurm_cluster():
    """SLURM_CONF of a running test cluster: the one already up, else one started here and stopped after."""
    if os.geteuid() != 0:
        unavailable("needs root (the daemons run as SlurmUser=root)")
    missing = [c for c in COMMANDS if shutil.which(c) is None]
    if missing:
        unavailable(f"not installed: {' '.join(missing)} (apt-get install slurm-wlm munge)")
    if Path("/etc/slurm/slurm.conf").exists():
        unavailable("/etc/slurm/slurm.conf exists: this machine belongs to another cluster")
    env = site_free_environment()
    env.pop("SLURM_CONF", None)
    already_up = cluster("status", env=env).returncode == 0
    up = cluster("up", env=env)
    if up.returncode != 0:
        cluster("down", env=env)
        unavailable(f"cluster.sh up failed:\n{up.stderr[-3000:]}")
    conf = re.search(r"^export SLURM_CONF=(\S+)$", up.stdout, re.M).group(1)
    yield conf
    if not already_up:
        cluster("down", env=env)


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    """The smoke workflow through profiles/slurm (with the test cluster's overrides)."""
    work = tmp_path_factory.mktemp("slurm-smoke")
    results, slurm_logs = work / "results", work / "slurm_logs"
    command = [sys.executable, "-m", "snakemake", *PROFILES, "--configfile", "config/smoke.yaml",
               "--config", f"results_dir={results}", "--slurm-logdir", str(slurm_logs)]
    try:
        result = subprocess.run(command, cwd=REPO, env=site_free_environment(SLURM_CONF=slurm_cluster),
                                capture_output=True, text=True, timeout=1200)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the SLURM smoke run took over {exc.timeout} s")
    output = result.stdout + result.stderr
    (work / "snakemake.log").write_text(output)
    assert result.returncode == 0, f"see {work / 'snakemake.log'}\n" + output[-6000:]
    records = [json.loads(p.read_text()) for p in sorted((results / "provenance/jobs").glob("*.json"))]
    return SimpleNamespace(results=results, slurm_logs=slurm_logs, output=output, records=records,
                           slurm_conf=slurm_cluster)


def slurm_job(job_id: str, slurm_conf: str) -> dict:
    """slurmctld's view of a job (kept MinJobAge seconds after it ended: no accounting here)."""
    out = subprocess.run(["scontrol", "-o", "show", "job", job_id], env={**os.environ, "SLURM_CONF": slurm_conf},
                         capture_output=True, text=True, check=True).stdout
    return dict(item.split("=", 1) for item in out.split() if "=" in item)


@pytest.mark.slow
def test_every_job_ran_in_a_slurm_job_on_the_node(slurm_run, tmp_path):
    expected, _ = dry_run("config/smoke.yaml", tmp_path / "r")
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
    # per dataset and method: training and evaluation
    learned = defaultdict(set)
    for rec in slurm_run.records:
        if rec["rule"] in ("chest_train_registration", "chest_evaluate_learned"):
            learned[rec["host"]["slurm_job_id"]].add((rec["rule"], rec["wildcards"]["dataset"],
                                                      rec["wildcards"]["method"]))
    assert len(learned) == 12 and all(len({k[1:] for k in keys}) == 1 and len(keys) == 2
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
        assert gpu_rule == (rec["rule"] in GPU_RULES), rec["rule"]
        if gpu_rule:
            seen.add(rec["rule"])
            assert host.get("slurm_gpus_on_node") == "1", (rec["rule"], host)
        else:
            assert "slurm_gpus_on_node" not in host, (rec["rule"], host)
    assert seen == GPU_RULES
    # and what was asked of SLURM: a GPU (with one CPU) for the GPU rules' jobs only
    gpu_jobs = {r["host"]["slurm_job_id"] for r in slurm_run.records if r["rule"] in GPU_RULES}
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
