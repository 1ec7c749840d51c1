"""A job process for the warm-start tests: ``python warm_job.py STEP FOLDER`` runs the step ``STEP`` of this module
through the runner's entry (``run_step``, as ``scripts/step.py`` does) with outputs in ``FOLDER``."""

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests folder: `support` importable

from medrepro.errors import DataError  # noqa: E402
from support.snakemake_job import Named  # noqa: E402


# ------------------------------------------------------------------ steps
def report(job) -> None:
    """What the step's process sees: its ids, folder, environment and thread counts."""
    import torch
    from threadpoolctl import threadpool_info

    seen = {"pid": os.getpid(), "cwd": os.getcwd(), "variable": os.environ.get("WARM_TEST_VARIABLE"),
            "argv": sys.argv, "torch_threads": torch.get_num_threads(),
            "pool_threads": sorted({pool["num_threads"] for pool in threadpool_info()}),
            "random": torch.rand(3, generator=torch.Generator().manual_seed(5)).tolist()}
    Path(job.output.out).write_text(json.dumps(seen))
    print("report written", flush=True)


def refuse(job) -> None:
    raise DataError(job.output.out, "refused on purpose")


def wait(job) -> None:
    Path(job.output.out).with_suffix(".pid").write_text(str(os.getpid()))
    time.sleep(120)


# ------------------------------------------------------------------ the job process
class Smk:
    """The attributes of Snakemake's script object that the runner reads."""

    def __init__(self, step: str, folder: Path):
        self.rule = f"warm_{step}"
        self.input, self.wildcards, self.log = Named(), Named(), [str(folder / f"{step}.log")]
        self.output = Named(out=str(folder / f"{step}.json"))
        self.params = Named(step=f"support.warm_job:{step}")
        self.threads, self.resources = 1, Named(_cores=1)
        self.config = {"provenance_dir": str(folder / "provenance")}


if __name__ == "__main__":
    from medrepro.pipeline.runner import run_step

    Path(sys.argv[2], "client.pid").write_text(json.dumps(os.getpid()))
    run_step(Smk(sys.argv[1], Path(sys.argv[2])))
