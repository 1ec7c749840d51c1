"""Recovery without flags: after a kill the documented command carries on, unless another run is alive.

Each test runs the real workflow in a copy of its files in a temporary working
directory (so that its ``.snakemake`` is its own) and builds as little as
possible: one dataset's synthetic files, or one dataset's chain up to its
autoencoder.
"""

import base64
import errno
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from medrepro.pipeline.recovery import RUN_LOCK_NAME, claim_working_directory, release_working_directory

from conftest import REPO, snakemake

WORKFLOW_FILES = ("Snakefile", "workflow", "config", "profiles", "scripts", "envs", "resources")


def workflow_copy(tmp_path) -> Path:
    """The workflow's files in a fresh working directory."""
    copy = tmp_path / "wd"
    copy.mkdir()
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, copy / name)
        else:
            shutil.copy2(source, copy / name)
    return copy


def build(copy: Path, results: Path, target: Path, *extra) -> subprocess.CompletedProcess:
    """Build one file of the smoke configuration with the command a user types."""
    return snakemake("--cores", "1", "--configfile", "config/smoke.yaml", "--config", f"results_dir={results}",
                     *extra, "--", str(target), cwd=copy, timeout=300)


def synthesize_jsrt(copy: Path, results: Path) -> subprocess.CompletedProcess:
    """The cheapest real job: JSRT's synthetic stand-ins."""
    return build(copy, results, results / "raw" / "JSRT")


def leave_snakemake_locks(copy: Path, *locked_outputs: Path) -> list[Path]:
    """The lock files a killed run leaves: its inputs and outputs, one path a line."""
    locks = copy / ".snakemake" / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    (locks / "0.input.lock").write_text(str(REPO / "config" / "smoke.yaml") + "\n")
    (locks / "0.output.lock").write_text("".join(f"{path}\n" for path in locked_outputs))
    return sorted(locks.iterdir())


def mark_incomplete(copy: Path, output: Path) -> None:
    """Snakemake's marker for an output whose job started and never finished."""
    incomplete = copy / ".snakemake" / "incomplete"
    incomplete.mkdir(parents=True, exist_ok=True)
    name = base64.urlsafe_b64encode(str(output).encode()).decode()
    (incomplete / name).write_text(json.dumps({"external_jobid": None}))


class LiveRun:
    """Another process that holds this working directory as a run does."""

    def __init__(self, copy: Path):
        code = ("import sys, time\n"
                "from medrepro.pipeline.recovery import claim_working_directory\n"
                "claim_working_directory(sys.argv[1], log=lambda line: None)\n"
                "print('holding', flush=True)\n"
                "time.sleep(600)\n")
        self.process = subprocess.Popen([sys.executable, "-c", code, str(copy / ".snakemake")],
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "holding"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.process.kill()
        self.process.wait()


# ------------------------------------------------------------------ the lock itself
def test_stale_locks_are_removed_only_when_no_other_run_is_alive(tmp_path):
    snakemake_dir = tmp_path / ".snakemake"
    with LiveRun(tmp_path):
        (snakemake_dir / "locks").mkdir(parents=True)
        (snakemake_dir / "locks" / "0.output.lock").write_text("results/x\n")  # the live run's own lock
        lines = []
        assert claim_working_directory(snakemake_dir, log=lines.append) == (True, [])
        release_working_directory()
        assert (snakemake_dir / "locks" / "0.output.lock").exists()
        assert len(lines) == 1 and "another run of this workflow is alive" in lines[0]
    lines = []
    try:
        other_run_alive, removed = claim_working_directory(snakemake_dir, log=lines.append)
        assert not other_run_alive and [p.name for p in removed] == ["0.output.lock"]
        assert not list((snakemake_dir / "locks").iterdir())
        assert len(lines) == 1 and "removed 1 stale Snakemake lock file" in lines[0]
        # this process now counts as a live run for any later one
        later = subprocess.run([sys.executable, "-c", "import sys; from medrepro.pipeline.recovery import "
                                "claim_working_directory as c; c(sys.argv[1])", str(snakemake_dir)],
                               capture_output=True, text=True, timeout=60, check=True)
        assert "another run of this workflow is alive" in later.stdout
    finally:
        release_working_directory()
    assert (snakemake_dir / RUN_LOCK_NAME).exists()


def test_a_file_system_without_locks_leaves_snakemake_to_decide(tmp_path, monkeypatch):
    (tmp_path / "locks").mkdir()
    (tmp_path / "locks" / "0.output.lock").write_text("results/x\n")

    def no_locks(*args):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    lines = []
    try:
        assert claim_working_directory(tmp_path, log=lines.append) == (False, [])
    finally:
        release_working_directory()
    assert (tmp_path / "locks" / "0.output.lock").exists()
    assert len(lines) == 1 and "cannot lock" in lines[0] and "snakemake --unlock" in lines[0]


# ------------------------------------------------------------------ the workflow after a kill
def test_stale_snakemake_locks_are_cleared_and_the_run_proceeds(tmp_path):
    copy, results = workflow_copy(tmp_path), tmp_path / "results"
    leave_snakemake_locks(copy, results / "raw" / "JSRT")
    result = synthesize_jsrt(copy, results)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "removed 2 stale Snakemake lock file(s) left by a killed run" in output
    assert (results / "raw" / "JSRT").is_dir() and not (copy / ".snakemake" / "locks").exists()


def test_the_locks_of_a_live_run_are_kept_and_the_run_stops_with_a_clear_message(tmp_path):
    copy, results = workflow_copy(tmp_path), tmp_path / "results"
    with LiveRun(copy):
        locks = leave_snakemake_locks(copy, results / "raw" / "JSRT")  # the live run's own locks
        result = synthesize_jsrt(copy, results)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "medrepro: another run of this workflow is alive in" in output
    assert "LockException" in output and "works on some of the same files: wait for it to end" in output
    assert "It can be removed with the --unlock argument" not in output and "Traceback" not in output
    assert sorted((copy / ".snakemake" / "locks").iterdir()) == locks
    assert not (results / "raw" / "JSRT").exists()


def test_incomplete_outputs_are_rerun_without_flags(tmp_path):
    copy, results = workflow_copy(tmp_path), tmp_path / "results"
    assert synthesize_jsrt(copy, results).returncode == 0
    # the obtain step's output, cut short by a kill, and Snakemake's marker of its unfinished job
    manifest = results / "chest" / "JSRT" / "raw_manifest.sha256"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("0123abcd  JSRT/JPC")
    mark_incomplete(copy, manifest)
    # without the workflow profile Snakemake stops, as it did before
    stopped = build(copy, results, manifest, "--workflow-profile", "none")
    assert stopped.returncode != 0 and "IncompleteFilesException" in stopped.stdout + stopped.stderr
    result = build(copy, results, manifest)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    digests = manifest.read_text().splitlines()
    assert len(digests) > 8 and all(len(line.split()[0]) == 64 for line in digests)
    assert not [p for p in (copy / ".snakemake" / "incomplete").rglob("*") if p.is_file()]


@pytest.mark.slow
def test_a_killed_snakemake_resumes_training_with_the_same_command(tmp_path):
    """SIGKILL to the whole Snakemake while the autoencoder trains; the same command finishes it from its checkpoint."""
    copy, results = workflow_copy(tmp_path), tmp_path / "results"
    config = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    config["studies"] = ["cxr14"]  # the atlas dataset's chain only
    config["chest"]["autoencoder"].update(steps=300, checkpoint_every=10)
    steps = config["chest"]["autoencoder"]["steps"]
    (copy / "config" / "killed.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/killed.yaml",
               "--config", f"results_dir={results}", "--until", "chest_train_autoencoder"]
    jsrt = results / "chest" / "JSRT"

    with open(tmp_path / "killed.log", "w") as log:
        run = subprocess.Popen(command, cwd=copy, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        in_progress = wait_for(lambda: next(jsrt.glob("checkpoints/**/autoencoder.ckpt.losses.csv"), None), run)
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    time.sleep(0.5)  # the killed group's files are closed
    # what a kill leaves: checkpoints, the log so far beside them, nothing at the rule's outputs
    assert in_progress.with_name("autoencoder.ckpt").exists()
    assert not list(jsrt.glob("models/**/autoencoder.*"))
    assert list((copy / ".snakemake" / "locks").iterdir()) and list((copy / ".snakemake" / "incomplete").iterdir())

    result = subprocess.run(command, cwd=copy, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "stale Snakemake lock file(s) left by a killed run" in output
    [record] = [json.loads(p.read_text()) for p in results.glob("provenance/jobs/chest_train_autoencoder__*.json")]
    training = record["extra"]["training"]
    assert training["resumed_from_step"] >= 10 and training["steps_run"] == steps - training["resumed_from_step"]
    [losses] = jsrt.glob("models/**/autoencoder.losses.csv")
    log = pd.read_csv(losses)
    assert log.loc[log["split"] == "train", "step"].tolist() == list(range(1, steps + 1))
    assert not [p for p in jsrt.glob("checkpoints/**/*") if p.is_file()]


def wait_for(find, process: subprocess.Popen, timeout: float = 240):
    """Poll ``find()`` until it returns a path; fail if the process ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = find()
        if found is not None:
            return found
        assert process.poll() is None, "the run ended before training wrote a checkpoint"
        time.sleep(0.05)
    process.kill()
    raise AssertionError("no checkpoint within the time limit")
