"""The data steps every study shares: a stand-in written, a dataset downloaded, raw files verified.

A study's ``steps.py`` keeps one thin function per rule that names what is its
own (the generator and its settings, the dataset) and calls one of these; the
rules pass ``params.source`` and ``params.raw_dir`` where a step needs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

from medrepro.data import sourcing
from medrepro.data.atomic import atomic_dir
from medrepro.provenance.pinning import pins_dir
from medrepro.pipeline.runner import Job

T = TypeVar("T")

# The config's `source` -> how sourcing.obtain checks the raw files (a download is verified once it arrived).
OBTAIN_MODES = {"synthetic": "synthetic", "download": "verify", "verify": "verify"}


def synthesize_step(job: Job, generate: Callable[[Path], T]) -> T:
    """The rule's output directory written by ``generate(directory)``, atomically; returns what it returns."""
    with atomic_dir(job.output._0) as tmp:
        return generate(tmp)


def download_step(job: Job, dataset: str | sourcing.Dataset) -> None:
    """The dataset fetched by its own download function into the rule's output directory, atomically."""
    with atomic_dir(job.output._0) as tmp:
        sourcing.fetch(dataset, tmp)


def obtain_step(job: Job, dataset: str | sourcing.Dataset) -> dict:
    """Verify ``params.raw_dir`` against its pin (a user's copy is pinned at first use); returns the summary.

    The output ``manifest`` is a verified copy of the pin, for the steps downstream.
    """
    p = job.params
    summary = sourcing.obtain(dataset, Path(p.raw_dir), Path(job.output.manifest), OBTAIN_MODES[p.source],
                              pins_dir=pins_dir(job.provenance_dir))
    record_user_copy(job, p.raw_dir)
    return summary


def record_user_copy(job: Job, raw_dir: str | Path) -> None:
    """A user-placed copy is no rule's output, so a step that reads it records it as its input here."""
    if str(raw_dir) not in job.all_inputs():
        job.extra_inputs.append(str(raw_dir))


def job_device(job: Job):
    """The device a training or inference step runs on (CUDA when the job has a GPU), recorded in its record."""
    from medrepro.nn.device import resolve_device

    device = resolve_device()
    job.extra["device"] = str(device)
    return device


def recorded_extras(job: Job, paths, key: str) -> dict:
    """What the jobs that wrote ``paths`` kept under ``extra[key]`` in their provenance records (path -> value, None
    where a record has none), for values that are no output's content, such as run times. Each record becomes an
    input of this job, so the provenance of what it makes from them names their source."""
    from medrepro.errors import DataError
    from medrepro.provenance.records import ProvenanceStore, record_path

    store = ProvenanceStore.load(job.provenance_dir)
    found = {}
    for path in paths:
        producer = store.producer(path)
        if producer is None:
            raise DataError(path, "no provenance record of the job that wrote it; rerun that job")
        record, _ = producer
        job.extra_inputs.append(str(record_path(job.provenance_dir, record["rule"], record["wildcards"])))
        found[str(path)] = record.get("extra", {}).get(key)
    return found
