"""Warm starts: a job's step runs in a fork of the run's server as it would in the job's own process."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medrepro.pipeline import warm

JOB = Path(__file__).resolve().parents[2] / "support/warm_job.py"


def wait_for(condition, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def server():
    """A server of this test process, started as the Snakefile starts one, importing torch but not the rest."""
    environ = {k: v for k, v in os.environ.items() if k != warm.SOCKET_VARIABLE}
    started = warm.start_server(environ, preload=("torch",))
    socket_path = Path(environ[warm.SOCKET_VARIABLE])
    assert started is not None and started.socket_path == socket_path
    wait_for(socket_path.exists, what="the server's socket")
    yield socket_path
    warm.stop_server()
    assert not socket_path.exists() and not socket_path.parent.exists()


def job_process(step: str, folder: Path, socket_path: Path | None, **env) -> subprocess.Popen:
    environ = {k: v for k, v in os.environ.items() if k != warm.SOCKET_VARIABLE}
    if socket_path is not None:
        environ[warm.SOCKET_VARIABLE] = str(socket_path)
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, str(JOB), step, str(folder)], cwd=folder, env={**environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_job(step: str, folder: Path, socket_path: Path | None, **env) -> tuple[subprocess.CompletedProcess, dict]:
    process = job_process(step, folder, socket_path, **env)
    stdout, stderr = process.communicate(timeout=120)
    client = json.loads((folder / "client.pid").read_text())
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), client


def record(folder: Path, step: str) -> dict:
    return json.loads((folder / "provenance/jobs" / f"warm_{step}.json").read_text())


def test_a_step_runs_in_a_child_of_the_server_with_the_job_process_streams_folder_and_environment(server, tmp_path):
    result, client = run_job("report", tmp_path / "warm", server, WARM_TEST_VARIABLE="seen", OMP_NUM_THREADS="3")
    assert result.returncode == 0, result.stderr
    seen = json.loads((tmp_path / "warm/report.json").read_text())
    assert seen["pid"] != client  # a child of the server ran it
    assert seen["cwd"] == str(tmp_path / "warm") and seen["variable"] == "seen"
    assert seen["argv"][0] == str(JOB)
    assert seen["torch_threads"] == 3 and seen["pool_threads"] == [3]  # as OMP_NUM_THREADS gives a fresh process
    assert "report written" in result.stdout  # the job process's own streams
    assert "rule warm_report finished" in (tmp_path / "warm/report.log").read_text()
    rec = record(tmp_path / "warm", "report")
    assert rec["warm_start"] is True
    assert rec["process_started"] <= rec["started"] <= rec["finished"]  # the job process's start, not the fork's


def test_without_a_server_the_job_process_runs_the_step_itself_with_the_same_result(server, tmp_path):
    result, _ = run_job("report", tmp_path / "warm", server, OMP_NUM_THREADS="2")
    assert result.returncode == 0, result.stderr
    for socket_path in (None, tmp_path / "missing.sock"):
        folder = tmp_path / f"cold{socket_path is None}"
        result, client = run_job("report", folder, socket_path, OMP_NUM_THREADS="2")
        assert result.returncode == 0, result.stderr
        seen = json.loads((folder / "report.json").read_text())
        assert seen["pid"] == client and record(folder, "report")["warm_start"] is False
        warm_seen = json.loads((tmp_path / "warm/report.json").read_text())
        for key in ("torch_threads", "pool_threads", "random", "variable"):
            assert seen[key] == warm_seen[key], key
    result, client = run_job("report", tmp_path / "off", server, OMP_NUM_THREADS="2", **{warm.SWITCH_VARIABLE: "0"})
    assert json.loads((tmp_path / "off/report.json").read_text())["pid"] == client


def test_a_failing_step_fails_the_job_process_with_its_message(server, tmp_path):
    result, _ = run_job("refuse", tmp_path, server)
    assert result.returncode == 1
    assert "refused on purpose" in result.stderr and "refused on purpose" in (tmp_path / "refuse.log").read_text()
    assert not (tmp_path / "provenance/jobs/warm_refuse.json").exists()
    result, _ = run_job("no_such_step", tmp_path / "unknown", server)
    assert result.returncode == 1 and "has no function 'no_such_step'" in result.stderr


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_job_process_takes_its_step_with_it(server, tmp_path, how):
    process = job_process("wait", tmp_path, server)
    pid_file = tmp_path / "wait.pid"
    wait_for(pid_file.exists, what="the step to start")
    child = int(pid_file.read_text())
    assert child != process.pid
    process.send_signal(how)
    process.wait(30)
    assert process.returncode != 0
    wait_for(lambda: not alive(child), timeout=10, what=f"the step's process {child} to end")


def test_a_step_killed_in_the_server_fails_its_job_process(server, tmp_path):
    process = job_process("wait", tmp_path, server)
    pid_file = tmp_path / "wait.pid"
    wait_for(pid_file.exists, what="the step to start")
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 1 and "ended without an exit status" in stderr


def test_a_server_whose_run_is_killed_ends_and_removes_its_socket_and_folder():
    parent = subprocess.Popen([sys.executable, "-c", "import time; from medrepro.pipeline import warm; "
                               "print(warm.start_server(preload=()).socket_path, flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        socket_path = Path(parent.stdout.readline().strip())
        assert socket_path.parent.name.startswith(warm.SOCKET_FOLDER_PREFIX)
        wait_for(socket_path.exists, what="the server's socket")
    finally:
        parent.kill()  # as kill -9 of Snakemake: no onsuccess or onerror runs
        parent.wait()
    wait_for(lambda: not socket_path.parent.exists(), timeout=20, what="the server to end")


def test_a_server_whose_imports_start_a_thread_serves_no_job(tmp_path):
    (tmp_path / "threaded.py").write_text("import threading, time\n"
                                          "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n")
    socket_path = tmp_path / "jobs.sock"
    result = subprocess.run([sys.executable, "-m", "medrepro.pipeline.warm", "--socket", str(socket_path),
                             "--preload", "threaded", "--parent", str(os.getpid())],
                            env={**os.environ, "PYTHONPATH": str(tmp_path)}, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and "importing started 1 threads" in result.stderr
    assert not socket_path.exists()


def test_warm_starts_can_be_switched_off(monkeypatch):
    environ = {warm.SWITCH_VARIABLE: "0"}
    assert warm.start_server(environ) is None and warm.SOCKET_VARIABLE not in environ
