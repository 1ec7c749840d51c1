"""What a workflow run would do: Snakemake's dry-run job table, parsed."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from medrepro.provenance.records import SOURCE_TREE as REPO  # the checkout whose workflow is planned


def job_counts(output: str) -> dict[str, int]:
    """Rule -> planned jobs (and ``total``) from the 'Job stats' table Snakemake prints."""
    counts, in_table = {}, False
    for line in output.splitlines():
        parts = line.split()
        if line.startswith("job ") and "count" in line:
            in_table = True
        elif in_table and len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
        elif in_table and counts and not parts:
            break
    return counts


def dry_run(configfile: str, results_dir: str | Path, workdir: Path = REPO) -> tuple[dict[str, int], float]:
    """Plan ``configfile`` into ``results_dir`` without running anything: (job counts, seconds taken)."""
    command = [sys.executable, "-m", "snakemake", "-n", "--configfile", configfile, "--config",
               f"results_dir={results_dir}"]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"snakemake dry run of {configfile} failed:\n{result.stderr[-3000:]}")
    return job_counts(result.stdout + result.stderr), seconds
