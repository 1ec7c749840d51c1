"""Warm job processes: a local run's jobs start in a process that has imported the heavy libraries already.

Every job is a fresh Python process (``scripts/step.py``), and most import torch (with torch._dynamo, which
its optimisers pull in), pandas, SciPy or MONAI before any work: about 2 s a job, more than the step itself for
most jobs of a small run. So a local run starts one server (the Snakefile's ``onstart``, :func:`start_server`)
that imports those libraries once and then forks one child per job. The job process hands the child its
standard streams, working directory, environment and plain :class:`~medrepro.pipeline.runner.Job`; the child
takes the thread counts that Snakemake's environment variables give a fresh process, runs the step through the
same runner, and sends back the exit status. The job process stays the one Snakemake watches: a signal it gets
is passed on to the child, and a child whose job process is gone terminates.

A job runs the step in its own process when no server takes it: a cluster job, a run with ``MEDREPRO_WARM=0``,
or a job that starts before the server has finished its imports. Both ways give the same bytes
(tests/kernel/pipeline/test_warm.py; the suite's determinism probes are rebuilt with warm starts off).

The server must fork before any library has started a thread or a GPU context: it only imports, with every
thread-count variable at 1, and never computes.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Iterable

SOCKET_VARIABLE = "MEDREPRO_WARM_SOCKET"
SWITCH_VARIABLE = "MEDREPRO_WARM"  # "0": every job runs in its own process
# What the workflow's jobs import before their work, most costly first (torch._dynamo: any torch optimiser).
# Not ITK: its lazy loader and global thread pool are left to each job.
PRELOAD = ("torch", "torch._dynamo", "torch.nn.functional", "monai.networks.nets", "pandas", "scipy.ndimage",
           "scipy.stats", "scipy.optimize", "sklearn.decomposition", "sklearn.svm", "sklearn.pipeline",
           "sklearn.model_selection", "matplotlib.figure", "matplotlib.backends.backend_agg", "pydicom",
           "SimpleITK", "PIL.Image", "tqdm", "psutil")
# Thread-count variables that Snakemake sets for each job (snakemake.shell); the server imports with them at 1.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
PARENT_POLL_S = 1.0
SOCKET_FOLDER_PREFIX = "medrepro-warm-"
_HEADER = struct.Struct("!Q")
_STATUS = struct.Struct("!i")
_in_child = False  # True in a forked child that runs a job

log = logging.getLogger("medrepro.warm")


# ------------------------------------------------------------------ the workflow's side
class Server:
    """A running server of this process: its socket and process."""

    def __init__(self, socket_path: Path, process: subprocess.Popen):
        self.socket_path, self.process = socket_path, process

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        for path in (self.socket_path, self.socket_path.parent):
            try:
                path.rmdir() if path.is_dir() else path.unlink()
            except OSError:
                pass


_running: list[Server] = []  # the server this process started


def start_server(environ: dict | None = None, preload: Iterable[str] = PRELOAD) -> Server | None:
    """Start a server for this process's jobs and name its socket in ``environ`` (``os.environ``, which the jobs
    inherit). None, and nothing started, when warm starts are switched off or one runs already. The server ends
    with this process, or with :func:`stop_server`.
    """
    environ = os.environ if environ is None else environ
    if environ.get(SWITCH_VARIABLE) == "0" or _running:
        return None
    folder = Path(tempfile.mkdtemp(prefix=SOCKET_FOLDER_PREFIX))
    socket_path = folder / "jobs.sock"
    if len(str(socket_path)) > 100:  # sun_path holds 108 bytes
        folder.rmdir()
        return None
    # The server imports this package from where this process has it (a workflow's own src/, installed or not).
    source = str(Path(__file__).resolve().parents[2])
    server_env = {**environ, **{name: "1" for name in THREAD_VARIABLES},
                  "PYTORCH_NVML_BASED_CUDA_CHECK": "1",  # a CUDA check while importing leaves CUDA uninitialised
                  "PYTHONPATH": os.pathsep.join(filter(None, [source, environ.get("PYTHONPATH")]))}
    server_env.pop(SOCKET_VARIABLE, None)
    process = subprocess.Popen([sys.executable, "-m", "medrepro.pipeline.warm", "--socket", str(socket_path),
                                "--parent", str(os.getpid()), "--preload", ",".join(preload)], env=server_env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    environ[SOCKET_VARIABLE] = str(socket_path)
    _running.append(Server(socket_path, process))
    return _running[0]


def stop_server() -> None:
    """Stop the server this process started, if any."""
    while _running:
        _running.pop().stop()


# ------------------------------------------------------------------ the job process's side
def run_in_server(job) -> int | None:
    """Run ``job`` in a child of this run's server; its exit status, or None when no server takes it (then
    nothing has run and the caller runs the step itself)."""
    path = os.environ.get(SOCKET_VARIABLE)
    if not path or os.environ.get(SWITCH_VARIABLE) == "0":
        return None
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(path)
    except OSError:  # not ready yet, or gone
        connection.close()
        return None
    with connection:
        request = pickle.dumps({"job": job, "cwd": os.getcwd(), "environ": dict(os.environ), "argv": sys.argv,
                                "path": sys.path})
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        try:
            socket.send_fds(connection, [_HEADER.pack(len(request))], [0, 1, 2])
            connection.sendall(request)
            child = _receive(connection, _STATUS)
        except OSError:
            child = None
        if child is None:  # the server took no job (it ended meanwhile): nothing ran
            return None
        _forward_signals_to(child)
        status = _receive(connection, _STATUS)
    if status is None:
        print(f"the step's process (pid {child}, forked by the warm-start server) ended without an exit status: "
              "killed", file=sys.stderr)
        return 1
    return status


def _forward_signals_to(pid: int) -> None:
    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)


def _receive(connection: socket.socket, layout: struct.Struct) -> int | None:
    data = _receive_exactly(connection, layout.size)
    return None if data is None else layout.unpack(data)[0]


def _receive_exactly(connection: socket.socket, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = connection.recv(remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


# ------------------------------------------------------------------ the server
def serve(socket_path: Path, parent: int, modules=PRELOAD) -> None:
    """Import ``modules``, then fork a child per connection until the parent process ``parent`` ends."""
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a library that fails here fails (or is unused) in the job
            log.warning("warm start: importing %s failed (%s); jobs import it themselves", name, exc)
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized():
        log.warning("warm start: CUDA was initialised while importing, and a fork would not inherit it; "
                    "every job runs in its own process")
        return
    if _thread_count() > 1:
        log.warning("warm start: importing started %d threads, and a fork keeps only the one that forks; "
                    "every job runs in its own process", _thread_count() - 1)
        return
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(socket_path))
        listener.listen(64)
        listener.settimeout(PARENT_POLL_S)
        while os.getppid() == parent:
            try:
                connection, _ = listener.accept()
            except socket.timeout:
                continue
            if os.fork() == 0:
                listener.close()
                _run_child(connection)  # never returns
            connection.close()
    finally:
        listener.close()
        socket_path.unlink(missing_ok=True)
        if socket_path.parent.name.startswith(SOCKET_FOLDER_PREFIX):  # the folder start_server made for it
            try:
                socket_path.parent.rmdir()
            except OSError:
                pass


def in_child() -> bool:
    """Whether this process is a server's child running a job (its record says so)."""
    return _in_child


def _thread_count() -> int:
    """Threads of this process, those of C libraries included (Linux), else Python's own."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def _run_child(connection: socket.socket) -> None:
    """In a forked child: become the job process's stand-in, run the job, send its exit status, exit."""
    global _in_child
    _in_child, status = True, 1
    try:
        header, fds, _, _ = socket.recv_fds(connection, _HEADER.size, 3)
        request = pickle.loads(_receive_exactly(connection, _HEADER.unpack(header)[0]))
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["environ"])
        sys.argv, sys.path[:] = request["argv"], request["path"]
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        adopt_thread_counts(os.environ)
        connection.sendall(_STATUS.pack(os.getpid()))
        threading.Thread(target=_end_with_job_process, args=(connection,), daemon=True).start()
        status = _run_job(request["job"])
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        try:
            connection.sendall(_STATUS.pack(status))
        finally:
            os._exit(status)


def _run_job(job) -> int:
    import traceback

    from medrepro.pipeline.runner import resolve_step, run

    try:
        run(job, resolve_step(job.step))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except Exception:  # noqa: BLE001 - a step name that does not resolve, as a job process would show it
        traceback.print_exc()
        return 1
    finally:
        logging.shutdown()
    return 0


def _end_with_job_process(connection: socket.socket) -> None:
    """Terminate this child when its job process closes the connection (killed, as Snakemake kills a job)."""
    try:
        connection.recv(1)
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def adopt_thread_counts(environ) -> None:
    """The thread counts a fresh process would take from ``environ`` (OMP_NUM_THREADS, else every CPU), for
    BLAS, OpenMP and torch alike: a step's results can depend on them."""
    threads = int(environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The warm-start server of a local workflow run.")
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--parent", type=int, required=True, help="serve until this process ends")
    parser.add_argument("--preload", default=",".join(PRELOAD), help="modules to import first, comma-separated")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(args.socket, args.parent, modules=tuple(filter(None, args.preload.split(","))))


if __name__ == "__main__":  # the server runs as the imported module: in_child() is the runner's flag
    from medrepro.pipeline import warm

    warm.main()
