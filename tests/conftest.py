"""Shared test settings, the one local smoke run of the suite, and what the workflow says about its studies."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
# Every study, the studies it reads from and its determinism probes, as the workflow reads them.
STUDY_TABLE = yaml.safe_load((REPO / "workflow/studies.yaml").read_text())
STUDIES = tuple(STUDY_TABLE)


def snakemake(*args, cwd=REPO, timeout=900, env=None) -> subprocess.CompletedProcess:
    """``snakemake ARGS``; ``env``: variables to set for it."""
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=None if env is None else {**os.environ, **env})


def run_smoke(results: Path, *targets: str, timeout: int = 1200, env=None) -> Path:
    """Run the smoke workflow locally from empty into ``results`` (all of it, or the given target files)."""
    result = snakemake("--cores", "2", "--configfile", "config/smoke.yaml", "--config", f"results_dir={results}",
                       *(("--", *targets) if targets else ()), timeout=timeout, env=env)
    assert result.returncode == 0, result.stderr[-6000:]
    return results


def smoke_config_with(folder: Path, studies: str) -> str:
    """The smoke config with another `studies:` line, e.g. ``"[chest]"``."""
    text = (REPO / "config/smoke.yaml").read_text()
    line = f"studies: [{', '.join(STUDIES)}]\n"
    assert line in text, "config/smoke.yaml must run every study of workflow/studies.yaml"
    path = folder / f"studies_{studies.strip('[]').replace(', ', '_') or 'none'}.yaml"
    path.write_text(text.replace(line, f"studies: {studies}\n"))
    return str(path)


@pytest.fixture(scope="session", autouse=True)
def slurm_smoke_run(request, tmp_path_factory):
    """The SLURM run of tests/workflow/test_slurm.py, started with the session when a selected test needs it
    (None otherwise). It mostly waits for the cluster, so the other tests run meanwhile."""
    if not any("slurm_run" in item.fixturenames for item in request.session.items):
        yield None
        return
    from support.slurm_run import SlurmSmokeRun

    run = SlurmSmokeRun(tmp_path_factory.mktemp("slurm-smoke")).start()
    yield run
    run.stop()


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """Results directory of the smoke workflow run locally, end to end (once per session)."""
    return run_smoke(tmp_path_factory.mktemp("smoke") / "results")


@pytest.fixture(scope="session")
def smoke_outputs(smoke_run) -> dict[str, str]:
    """Every output file the workflow plans for the smoke config (path below the results dir -> its rule),
    from Snakemake's summary of the finished smoke run."""
    result = snakemake("--summary", "--configfile", "config/smoke.yaml", "--config", f"results_dir={smoke_run}")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split("\t") for line in result.stdout.splitlines()[1:] if "\t" in line]
    return {str(Path(row[0]).relative_to(smoke_run)): row[2] for row in rows}


@pytest.fixture(scope="session")
def study_plans(tmp_path_factory) -> dict[str, dict[str, int]]:
    """Rule -> planned jobs of the smoke config with each study enabled alone, and with all (``"all"``)."""
    from medrepro.pipeline.planning import dry_run

    folder = tmp_path_factory.mktemp("plans")
    plans = {study: dry_run(smoke_config_with(folder, f"[{study}]"), folder / study)[0] for study in STUDIES}
    plans["all"] = dry_run("config/smoke.yaml", folder / "all")[0]
    return plans


@pytest.fixture(scope="module")
def restore_thread_count():
    """Torch's thread count as it was before the module: its training runs set their own (one thread is fastest on
    shared CPUs), and other modules keep theirs."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
