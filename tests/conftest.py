"""Shared test settings and the local smoke run (used by the workflow and SLURM tests)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]


def snakemake(*args, cwd=REPO, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def run_smoke(tmp_path_factory, name: str) -> Path:
    """Run the smoke workflow locally, end to end, from empty into a new directory; its results directory."""
    results = tmp_path_factory.mktemp(name) / "results"
    result = snakemake("--cores", "2", "--configfile", "config/smoke.yaml", "--config", f"results_dir={results}",
                       timeout=1200)
    assert result.returncode == 0, result.stderr[-6000:]
    return results


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """Results directory of the smoke workflow run locally, end to end (once per session)."""
    return run_smoke(tmp_path_factory, "smoke")


@pytest.fixture(scope="session")
def smoke_run_again(tmp_path_factory) -> Path:
    """A second smoke run from empty, into another directory (for the identical-bytes test)."""
    return run_smoke(tmp_path_factory, "smoke_again")


@pytest.fixture(scope="module")
def restore_thread_count():
    """Torch's thread count as it was before the module: its training runs set their own (one thread is fastest on
    shared CPUs), and other modules keep theirs."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
