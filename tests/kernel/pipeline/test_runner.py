"""The runner: a rule's params.step resolves to its function, and is recorded beside the params."""

import json
from pathlib import Path

import pytest

from medrepro.pipeline import steps as kernel_steps
from medrepro.pipeline.runner import Job, execute, job_from_snakemake, resolve_step

from support.snakemake_job import Named



def test_resolve_step_finds_the_function_and_names_what_is_wrong():
    assert resolve_step("medrepro.pipeline.steps:obtain_step") is kernel_steps.obtain_step
    with pytest.raises(ValueError, match="module:function"):
        resolve_step("medrepro.pipeline.steps.obtain_step")
    with pytest.raises(ValueError, match="has no function 'nope'"):
        resolve_step("medrepro.pipeline.steps:nope")
    with pytest.raises(ModuleNotFoundError):
        resolve_step("medrepro.nowhere:split")


class FakeSnakemake:
    """The attributes of Snakemake's ``snakemake`` script object that the runner reads."""

    def __init__(self, tmp_path: Path):
        self.rule = "fake"
        self.input, self.output, self.wildcards, self.log = Named(), Named(out=str(tmp_path / "o.txt")), Named(), []
        self.params = Named(step="medrepro.report.claims:claims_table_step", seed=3)
        self.threads, self.resources = 1, Named(_cores=1, mem_mb=100)
        self.config = {"provenance_dir": str(tmp_path / "prov")}


def test_the_step_is_recorded_beside_the_params_not_among_them(tmp_path):
    job = job_from_snakemake(FakeSnakemake(tmp_path))
    assert job.step == "medrepro.report.claims:claims_table_step" and dict(job.params) == {"seed": 3}

    def write(job: Job) -> None:
        Path(job.output.out).write_text("done")

    execute(job, write)
    record = json.loads(next((tmp_path / "prov").rglob("*.json")).read_text())
    assert record["step"] == "medrepro.report.claims:claims_table_step"
    assert record["params"] == {"seed": 3} and record["seed"] == 3
