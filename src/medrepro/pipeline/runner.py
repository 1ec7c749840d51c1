"""The step runner: turns a Snakemake job into a plain :class:`Job`, runs its step, records its provenance.

Every rule runs ``scripts/step.py`` and names its step function in
``params.step`` as ``module:function`` (``medrepro.studies.chest.steps:split``).
:func:`run_step` imports that function, sends logging to the rule's log file,
calls the step, and writes the job's provenance record once the step returned
(outputs are complete by then: every step writes them atomically). The step's
name is recorded beside the params, not among them: params are config values.
"""

from __future__ import annotations

import importlib
import logging
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from medrepro.data.atomic import remove_temporaries
from medrepro.pipeline import warm
from medrepro.provenance import records as provenance
from medrepro.errors import MedreproError

log = logging.getLogger("medrepro")

STEP_PARAM = "step"


class _Namespace(dict):
    """Attribute and key access to named inputs, outputs and params."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc


@dataclass
class Job:
    rule: str
    input: _Namespace
    output: _Namespace
    params: _Namespace
    wildcards: _Namespace = field(default_factory=_Namespace)
    threads: int = 1
    resources: dict = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    provenance_dir: str = "results/provenance"
    # Per-row lineage for tables: set by a step, stored in the provenance record.
    cells: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    # Files a step read that are no rule's output (a user-placed dataset copy).
    extra_inputs: list[str] = field(default_factory=list)
    # The step function, as ``module:function`` (from the rule's ``params.step``).
    step: str | None = None
    # When the job's process started (the one Snakemake runs; the step may run in a warm child of it).
    process_started: str | None = None

    def all_inputs(self) -> list[str]:
        return _flatten([*self.input.values(), *self.extra_inputs])

    def all_outputs(self) -> list[str]:
        return _flatten(self.output.values())


def _flatten(values) -> list[str]:
    out: list[str] = []
    for v in values:
        if isinstance(v, (list, tuple)):
            out.extend(_flatten(v))
        elif v is not None:
            out.append(str(v))
    return list(dict.fromkeys(out))


def _named(items) -> _Namespace:
    """Snakemake Namedlist -> dict of name -> value; unnamed items get positional keys."""
    ns = _Namespace()
    names = dict(items.items()) if hasattr(items, "items") else {}
    ns.update({k: (list(v) if not isinstance(v, str) and hasattr(v, "__iter__") and not isinstance(v, dict) else v)
               for k, v in names.items()})
    named_values = {id(v) for v in names.values()}
    for i, v in enumerate(items):
        if id(v) not in named_values:
            ns.setdefault(f"_{i}", v)
    return ns


def job_from_snakemake(smk) -> Job:
    resources = {k: v for k, v in dict(smk.resources.items()).items() if not k.startswith("_")}
    params = _named(smk.params)
    step = params.pop(STEP_PARAM, None)
    return Job(
        rule=smk.rule,
        step=step,
        input=_named(smk.input),
        output=_named(smk.output),
        params=params,
        wildcards=_named(smk.wildcards),
        threads=int(smk.threads),
        resources=resources,
        log=[str(p) for p in smk.log],
        provenance_dir=smk.config.get("provenance_dir", "results/provenance"),
        process_started=provenance.process_started(),
    )


def setup_logging(log_files: list[str]) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    for path in log_files[:1]:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=handlers, force=True)


def execute(job: Job, step: Callable[[Job], None]) -> None:
    """Run a step and record its provenance (the testable core of :func:`run`)."""
    started = provenance.now()
    log.info("rule %s %s started", job.rule, dict(job.wildcards))
    step(job)
    for output in job.all_outputs():  # what a killed earlier attempt of this job left half-written
        remove_temporaries(output)
    finished = provenance.now()
    record = provenance.build_record(
        rule=job.rule, wildcards=dict(job.wildcards), inputs=job.all_inputs(), outputs=job.all_outputs(),
        params=dict(job.params), threads=job.threads, resources=job.resources, started=started,
        finished=finished, log=job.log, cells=job.cells, extra=job.extra, step=job.step,
        process_started=job.process_started or provenance.process_started(), warm_start=warm.in_child())
    provenance.write_record(job.provenance_dir, record)
    log.info("rule %s finished; provenance recorded", job.rule)


def run(job: Job, step: Callable[[Job], None]) -> None:
    """Run a job's step as a job process does: errors are logged and exit non-zero."""
    setup_logging(job.log)
    try:
        execute(job, step)
    except MedreproError as exc:
        # Expected failures (bad input, bad config) name the file and the problem: no traceback needed.
        log.error("rule %s failed: %s", job.rule, exc)
        sys.exit(1)
    except Exception:  # noqa: BLE001 - anything else is a bug: keep the traceback
        log.error("rule %s failed:\n%s", job.rule, traceback.format_exc())
        sys.exit(1)


def resolve_step(name: str) -> Callable[[Job], None]:
    """The step function named ``module:function``; a clear error for a name that does not resolve."""
    module_name, sep, function_name = str(name).partition(":")
    if not sep or not module_name or not function_name:
        raise ValueError(f"params.step must be 'module:function', got {name!r}")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, function_name)
    except AttributeError as exc:
        raise ValueError(f"params.step {name!r}: {module_name} has no function {function_name!r}") from exc


def run_step(smk) -> None:
    """Entry point of ``scripts/step.py``: run the step named in the rule's ``params.step``, in a warm child
    of the run's server when there is one (:mod:`medrepro.pipeline.warm`), else in this process."""
    name = dict(smk.params.items()).get(STEP_PARAM)
    if name is None:
        sys.exit(f"rule {smk.rule}: no params.step naming the step function to run (module:function)")
    job = job_from_snakemake(smk)
    status = warm.run_in_server(job)
    if status is not None:
        sys.exit(status)
    run(job, resolve_step(name))
