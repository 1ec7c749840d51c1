"""The workflow on SLURM: profiles/slurm, planned and run on a single-node test cluster.

The cluster (tests/workflow/slurm/cluster.sh: slurmctld, slurmd and munged on this machine,
two stand-in GPUs, no accounting) needs root and the slurm-wlm and munge packages.
Without them the cluster tests are skipped, except under CI=true, where they fail.

One SLURM run of the smoke workflow serves every cluster test. Two faults are
injected into it while it runs (see :class:`FaultInjector`): a job whose process
is killed, and a training job cancelled after its first checkpoint. The run must
still complete, with the same tables as the uninterrupted local smoke run.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from rocrate.rocrate import ROCrate

from medrepro.provenance import records as provenance
from medrepro.provenance.crate import export_crate
from medrepro.pipeline.planning import dry_run
from medrepro.nn.training.checkpoint import load_checkpoint, load_torch

from conftest import REPO, snakemake
from support.crate_trace import as_list, trace

CLUSTER = REPO / "tests/workflow/slurm/cluster.sh"
PROFILES = ["--profile", "profiles/slurm", "--profile", "tests/workflow/slurm/profile"]
COMMANDS = ("munged", "munge", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scontrol", "srun")
SITE_VARIABLES = ("MEDREPRO_SLURM_ACCOUNT", "MEDREPRO_SLURM_PARTITION", "MEDREPRO_SLURM_GPU_PARTITION",
                  "MEDREPRO_SLURM_GPU_MODEL", "SNAKEMAKE_SLURM_PARTITIONS")
# GPU rules of the studies the SLURM run executes, and of every study (the profile's dry runs plan them all).
RUN_GPU_RULES = {"chest_train_autoencoder", "chest_train_registration", "chest_evaluate_learned", "cxr14_segment",
                 "cxr14_rca", "cxr14_rca_validation", "cxr14_features"}
GPU_RULES = RUN_GPU_RULES | {"mammo_registration_pretrain_detector", "mammo_registration_train",
                             "mammo_registration_evaluate_learned"}
# The SLURM run executes the chest and ChestX-ray14 studies of the smoke config: between them they have every
# kind of rule, group and fault the profile handles; the mammography study's entries are planned by the dry runs.
RUN_STUDIES = "[chest, cxr14]"
# Groups of profiles/slurm whose members share one cluster job in the smoke run.
ONE_JOB_GROUPS = {
    "chest_data": {"chest_synthesize", "chest_obtain", "chest_convert"},
    "cxr14_data": {"cxr14_synthesize", "cxr14_obtain", "cxr14_manifest"},
    "report": {"chest_registration_table", "chest_registration_wilcoxon", "chest_claims", "claims", "chest_figure_dice",
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


# ------------------------------------------------------------ fault injection
def processes_holding_files_under(directory: Path) -> dict[int, Path]:
    """pid -> a file under ``directory`` that the process has open (a rule's log: one job's step process)."""
    prefix = f"{directory.resolve()}{os.sep}"
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            for fd in os.scandir(f"/proc/{entry.name}/fd"):
                target = os.readlink(fd.path)
                if target.startswith(prefix):
                    found[int(entry.name)] = Path(target)
                    break
        except OSError:  # gone meanwhile, or a kernel thread
            continue
    return found


def slurm_job_of(pid: int) -> str:
    """SLURM_JOB_ID in a process's environment."""
    for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        if item.startswith(b"SLURM_JOB_ID="):
            return item.split(b"=", 1)[1].decode()
    raise AssertionError(f"process {pid} does not run in a SLURM job")


def wait_until_gone(pid: int, timeout: float) -> None:
    """Wait for a process to exit (a zombie counts as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return
        except (FileNotFoundError, ProcessLookupError):
            return
        time.sleep(0.1)
    raise AssertionError(f"process {pid} still runs {timeout} s after its job was cancelled")


class FaultInjector:
    """Two faults, each injected once into a running SLURM workflow by :meth:`poll`.

    ``killed``: the first ChestX-ray14 RCA shard job has its step process killed
    (SIGKILL, as the kernel's out-of-memory killer would): the job fails.
    ``cancelled``: the first registration training seen past a checkpoint is
    frozen (SIGSTOP) so that it cannot finish meanwhile, checked to have its
    checkpoint and no model yet, and its SLURM job is cancelled with scancel.
    """

    def __init__(self, results: Path, env: dict):
        self.results, self.env = results, env
        self.killed: dict | None = None
        self.cancelled: dict | None = None

    @property
    def done(self) -> bool:
        return self.killed is not None and self.cancelled is not None

    def poll(self) -> None:
        if self.killed is None and (self.results / "logs/cxr14_rca").is_dir():
            self._kill_rca_shard()
        if self.cancelled is None and any(c.stem != "autoencoder"
                                          for c in self.results.glob("chest/*/checkpoints/seed*/*.ckpt")):
            self._cancel_training()

    def _kill_rca_shard(self) -> None:
        for pid, log in processes_holding_files_under(self.results / "logs/cxr14_rca").items():
            job_id = slurm_job_of(pid)
            os.kill(pid, signal.SIGKILL)
            self.killed = {"job_id": job_id, "shard": log.stem}
            return

    def _cancel_training(self) -> None:
        training = processes_holding_files_under(self.results / "logs/chest_train_registration")
        for pid in training:
            os.kill(pid, signal.SIGSTOP)
        victim = None
        for pid, log in training.items():
            dataset, method_seed = log.stem.split("_", 1)  # <dataset>_<method>_seed<N>.log
            method, seed = method_seed.rsplit("_seed", 1)
            checkpoint = self.results / "chest" / dataset / "checkpoints" / f"seed{seed}" / f"{method}.ckpt"
            model = self.results / "chest" / dataset / "models" / f"seed{seed}" / f"{method}.pt"
            if victim is None and checkpoint.exists() and not model.exists():
                victim = pid
                self.cancelled = {"dataset": dataset, "method": method, "seed": seed, "job_id": slurm_job_of(pid),
                                  "checkpoint_step": load_checkpoint(checkpoint)["step"]}
        for pid in training:
            if pid != victim:
                os.kill(pid, signal.SIGCONT)
        if victim is not None:
            # SLURM wakes the frozen process to deliver SIGTERM (SIGKILL after KillWait)
            subprocess.run(["scancel", self.cancelled["job_id"]], env=self.env, check=True)
            wait_until_gone(victim, timeout=60)


# ------------------------------------------------------------ the SLURM run
@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    """The smoke workflow through profiles/slurm (with the test cluster's overrides), faults injected."""
    work = tmp_path_factory.mktemp("slurm-smoke")
    results, slurm_logs, log_path = work / "results", work / "slurm_logs", work / "snakemake.log"
    config = run_config(work)
    command = [sys.executable, "-m", "snakemake", *PROFILES, "--configfile", config,
               "--config", f"results_dir={results}", "--slurm-logdir", str(slurm_logs)]
    env = site_free_environment(SLURM_CONF=slurm_cluster)
    faults = FaultInjector(results, env)
    deadline = time.monotonic() + 1500
    with open(log_path, "w") as log:
        run = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            while run.poll() is None:
                if time.monotonic() > deadline:
                    pytest.fail(f"the SLURM smoke run took over 1500 s; see {log_path}")
                if not faults.done:
                    faults.poll()
                time.sleep(0.05)
        finally:
            if run.poll() is None:
                run.terminate()
                run.wait(60)
    output = log_path.read_text()
    assert run.returncode == 0, f"see {log_path}\n" + output[-6000:]
    records = [json.loads(p.read_text()) for p in sorted((results / "provenance/jobs").glob("*.json"))]
    return SimpleNamespace(results=results, slurm_logs=slurm_logs, output=output, records=records,
                           slurm_conf=slurm_cluster, faults=faults, env=env, config=config)


def run_config(folder: Path) -> str:
    """The smoke config with the studies the SLURM run executes."""
    text = (REPO / "config/smoke.yaml").read_text()
    line = next(line for line in text.splitlines() if line.startswith("studies:"))
    path = folder / "smoke_slurm.yaml"
    path.write_text(text.replace(line, f"studies: {RUN_STUDIES}"))
    return str(path)


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
    assert tables == sorted(p.name for p in (smoke_run / "tables").iterdir() if not p.name.startswith("mammo_"))
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
