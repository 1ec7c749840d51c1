"""The same config on the same machine gives the same bytes, shown without a second full smoke run.

Each study names a few of its outputs in workflow/studies.yaml (`probes`: a model, a table). They are rebuilt
from empty into a second results directory, with everything they depend on, and must equal the suite's smoke
run byte for byte, as must the hashes the provenance records of both runs hold for every job the rebuild ran.
(The SLURM run, tests/workflow/test_slurm.py, compares every file it writes with the smoke run's as well.)

The smoke run's jobs start warm (forks of one server, medrepro.pipeline.warm); the rebuild's jobs each start in a
process of their own, as on a cluster, so the comparison also shows that warm starts change no byte.
"""

import json
from pathlib import Path

import pytest

from medrepro.pipeline import warm

from conftest import STUDY_TABLE, run_smoke

PROBES = [probe for entry in STUDY_TABLE.values() for probe in entry["probes"]]


def recorded_hashes(results: Path) -> dict:
    """(record file, path with the results directory replaced) -> sha256, for every job's inputs and outputs."""
    hashes = {}
    for path in sorted((results / "provenance" / "jobs").glob("*.json")):
        record = json.loads(path.read_text())
        for entry in record["inputs"] + record["outputs"]:
            hashes[(path.name, entry["path"].replace(str(results), "<results>"))] = entry.get("sha256")
    return hashes


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory, smoke_run) -> Path:
    results = tmp_path_factory.mktemp("rebuilt") / "results"
    return run_smoke(results, *(str(results / probe) for probe in PROBES), env={warm.SWITCH_VARIABLE: "0"})


def test_every_study_names_probes_among_its_outputs():
    for study, entry in STUDY_TABLE.items():
        assert entry["probes"], f"workflow/studies.yaml: {study} names no probe"
    assert any(p.endswith(".pt") for p in PROBES) and any(p.startswith("tables/") for p in PROBES)


@pytest.mark.slow
def test_probes_rebuilt_from_empty_are_byte_identical(smoke_run, rebuilt):
    for probe in PROBES:
        assert (rebuilt / probe).read_bytes() == (smoke_run / probe).read_bytes(), probe


@pytest.mark.slow
def test_the_rebuilds_records_hold_the_smoke_runs_hashes(smoke_run, rebuilt):
    ours, theirs = recorded_hashes(rebuilt), recorded_hashes(smoke_run)
    assert len(ours) > 10 * len(PROBES)  # the probes' whole lineage was rebuilt and recorded
    assert {key: theirs.get(key) for key in ours} == ours


@pytest.mark.slow
def test_the_smoke_runs_jobs_started_warm_and_the_rebuilds_each_in_its_own_process(smoke_run, rebuilt):
    def warm_starts(results: Path) -> list[bool]:
        return [json.loads(p.read_text())["warm_start"] for p in (results / "provenance" / "jobs").glob("*.json")]

    smoke = warm_starts(smoke_run)
    assert sum(smoke) > len(smoke) / 2  # all but the first few, which start while the server imports
    assert not any(warm_starts(rebuilt))
