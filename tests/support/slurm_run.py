"""The SLURM run of the suite (tests/workflow/test_slurm.py): the smoke workflow through profiles/slurm on a
single-node test cluster, with two faults injected while it runs.

The run mostly waits (for SLURM to start jobs, for Snakemake's next status query), so it starts with the session,
in a thread of its own, as soon as a selected test needs it (tests/conftest.py), and the other tests run meanwhile;
``slurm_run`` in test_slurm.py waits for its result.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from medrepro.nn.training.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "tests/workflow/slurm/cluster.sh"
PROFILES = ["--profile", "profiles/slurm", "--profile", "tests/workflow/slurm/profile"]
COMMANDS = ("munged", "munge", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scontrol", "srun")
SITE_VARIABLES = ("MEDREPRO_SLURM_ACCOUNT", "MEDREPRO_SLURM_PARTITION", "MEDREPRO_SLURM_GPU_PARTITION",
                  "MEDREPRO_SLURM_GPU_MODEL", "SNAKEMAKE_SLURM_PARTITIONS")
# The SLURM run executes the chest and ChestX-ray14 studies of the smoke config: between them they have every
# kind of rule, group and fault the profile handles; the mammography study's entries are planned by the dry runs.
RUN_STUDIES = "[chest, cxr14]"
DEADLINE_S = 1500


def site_free_environment(**extra) -> dict:
    """This environment without site settings of the profile or SLURM client defaults."""
    env = {k: v for k, v in os.environ.items()
           if k not in SITE_VARIABLES and not k.startswith(("SBATCH_", "SRUN_", "SALLOC_"))}
    env.update(extra)
    return env


def cluster(*args: str, env: dict, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CLUSTER), *args], env=env, capture_output=True, text=True, timeout=timeout)


class Unavailable(Exception):
    """The test cluster cannot run here: the reason."""


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
def run_config(folder: Path) -> str:
    """The smoke config with the studies the SLURM run executes."""
    text = (REPO / "config/smoke.yaml").read_text()
    line = next(line for line in text.splitlines() if line.startswith("studies:"))
    path = folder / "smoke_slurm.yaml"
    path.write_text(text.replace(line, f"studies: {RUN_STUDIES}"))
    return str(path)


class SlurmSmokeRun:
    """The smoke workflow through profiles/slurm (with the test cluster's overrides), faults injected, in a thread.

    :meth:`start` returns at once; :meth:`result` waits and gives what the tests read (results, records, output,
    faults), or raises :class:`Unavailable` naming why the cluster could not run here, or AssertionError when the
    run failed; :meth:`stop` ends the run if it still runs and stops the cluster this run started.
    """

    def __init__(self, work: Path):
        self.work = work
        self.results, self.slurm_logs, self.log_path = work / "results", work / "slurm_logs", work / "snakemake.log"
        self.process: subprocess.Popen | None = None
        self.started_cluster = False
        self._outcome: SimpleNamespace | Exception | None = None
        self._thread = threading.Thread(target=self._run, name="slurm-smoke-run", daemon=True)

    def start(self) -> "SlurmSmokeRun":
        self._thread.start()
        return self

    def result(self) -> SimpleNamespace:
        self._thread.join()
        if isinstance(self._outcome, Exception):
            raise self._outcome
        return self._outcome

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(60)
        self._thread.join(120)
        if self.started_cluster:
            cluster("down", env=self._cluster_env())

    @staticmethod
    def _cluster_env() -> dict:
        env = site_free_environment()
        env.pop("SLURM_CONF", None)
        return env

    def _run(self) -> None:
        try:
            self._outcome = self._execute(self._start_cluster())
        except Exception as exc:  # noqa: BLE001 - handed to the tests by result()
            self._outcome = exc

    def _start_cluster(self) -> str:
        """SLURM_CONF of a running test cluster: the one already up, else one started here."""
        if os.geteuid() != 0:
            raise Unavailable("needs root (the daemons run as SlurmUser=root)")
        missing = [c for c in COMMANDS if shutil.which(c) is None]
        if missing:
            raise Unavailable(f"not installed: {' '.join(missing)} (apt-get install slurm-wlm munge)")
        if Path("/etc/slurm/slurm.conf").exists():
            raise Unavailable("/etc/slurm/slurm.conf exists: this machine belongs to another cluster")
        env = self._cluster_env()
        self.started_cluster = cluster("status", env=env).returncode != 0
        up = cluster("up", env=env)
        if up.returncode != 0:
            cluster("down", env=env)
            raise Unavailable(f"cluster.sh up failed:\n{up.stderr[-3000:]}")
        return re.search(r"^export SLURM_CONF=(\S+)$", up.stdout, re.M).group(1)

    def _execute(self, slurm_conf: str) -> SimpleNamespace:
        config = run_config(self.work)
        command = [sys.executable, "-m", "snakemake", *PROFILES, "--configfile", config,
                   "--config", f"results_dir={self.results}", "--slurm-logdir", str(self.slurm_logs)]
        env = site_free_environment(SLURM_CONF=slurm_conf)
        faults = FaultInjector(self.results, env)
        deadline = time.monotonic() + DEADLINE_S
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                while self.process.poll() is None:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"the SLURM smoke run took over {DEADLINE_S} s; see {self.log_path}")
                    if not faults.done:
                        faults.poll()
                    time.sleep(0.05)
            finally:
                if self.process.poll() is None:
                    self.process.terminate()
                    self.process.wait(60)
        output = self.log_path.read_text()
        if self.process.returncode != 0:
            raise AssertionError(f"see {self.log_path}\n" + output[-6000:])
        records = [json.loads(p.read_text()) for p in sorted((self.results / "provenance/jobs").glob("*.json"))]
        return SimpleNamespace(results=self.results, slurm_logs=self.slurm_logs, output=output, records=records,
                               slurm_conf=slurm_conf, faults=faults, env=env, config=config)
