"""The bad-input framework: what a case is, the three ways to run one, and the damage done to stand-in copies.

Every kind of mistake is a :class:`BadInput`: its name, how it is set up and run, the exit code expected, the
strings its message must contain (the file or config key, and what to do), and the paths that must not exist
afterwards. Three ways to run one:

* :func:`config_case`: a config file merged over config/config.yaml and checked (in-process, or end to end with
  ``snakemake -n``: the workflow stops while it reads the config, before any job);
* :func:`step_case`: one rule's step, run the way ``scripts/step.py`` runs it (``medrepro.pipeline.runner.run_step``: the
  error becomes one logged line and exit 1), on a damaged copy of a small stand-in dataset of the :class:`Stock`;
* :func:`cli_case`: the ``medrepro`` command on a copy of a small run's records and tables.

Each study lists its cases in ``tests/studies/<study>/bad_inputs.py`` (``CASES``, and ``make_stock(raw)`` that
writes its stand-ins into ``raw/``); :func:`study_module` loads that file, and tests/workflow/test_bad_inputs.py
runs the cases of every study of workflow/studies.yaml.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

import pandas as pd

from medrepro.pipeline import runner
from medrepro.pipeline.config_check import check_config_files
from medrepro.errors import ConfigError
from medrepro.pipeline.runner import Job, _Namespace, execute

from conftest import REPO
from support.snakemake_job import Named

MAX_MESSAGE_CHARS = 300
# Where the message also says what to download, from where and where to put it (the datasets' instructions).
INSTRUCTIONS_CHARS = 900
# Where it lists what was expected (a table's header, the allowed labels), or gives both digests and the
# command that re-pins the data.
LISTING_CHARS = 500
DIGESTS_CHARS = 700
# Added per DICOM the message names: its path below the raw folder in the NBIA retriever's layout (subject, study
# and series folders) is about 120 characters.
DICOM_PATH_CHARS = 150
# Lines the user sees around the message: Snakemake's notes (profile, config merge) or a step's start line.
MAX_OUTPUT_LINES = 6
LOG_PREFIX = re.compile(r"^\S+ \S+ (?P<level>[A-Z]+) \S+: ")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
READ_ONLY = "{read_only}"  # in a case's args or names: a place the crate cannot be written (read_only_path)
STUDY_TESTS = REPO / "tests" / "studies"


@dataclass
class Outcome:
    exit_code: int
    output: str  # all the user sees: stderr, or the job's log
    messages: list[str]  # the lines that report problems, without log prefixes


@dataclass(frozen=True)
class BadInput:
    name: str
    run: Callable[[Path, "Stock"], Outcome]  # sets the mistake up in the case's folder and runs the command
    names: tuple[str, ...]  # what one message line must contain; "{case}" stands for the case's folder
    exit_code: int = 1
    absent: tuple[str, ...] = ()  # paths under the case's folder (or absolute) that must not exist afterwards
    max_chars: int = MAX_MESSAGE_CHARS


def unwrapped(entry) -> BadInput:
    """A case of a ``CASES`` list, also one wrapped in ``pytest.param`` (a known library problem, marked xfail)."""
    return entry if isinstance(entry, BadInput) else entry.values[0]


def fill(text: str, folder: Path) -> str:
    """``text`` with the case's folder for ``{case}`` and a place that cannot be written for ``READ_ONLY``."""
    return text.replace("{case}", str(folder)).replace(READ_ONLY, read_only_path(folder))


def read_only_path(case: Path) -> str:
    """A place the crate cannot be written: in a folder without write permission, or, for root (whom
    permissions do not stop), in /proc."""
    return "/proc/medrepro-bad-input.crate.zip" if os.geteuid() == 0 else str(case / "read-only" / "crate.zip")


def make_read_only(case: Path) -> None:
    """The folder of :func:`read_only_path`, without write permission."""
    if os.geteuid() != 0:
        (case / "read-only").mkdir()
        (case / "read-only").chmod(0o555)


# ---------------------------------------------------------------- the studies' cases


def study_module(study: str) -> ModuleType:
    """tests/studies/<study>/bad_inputs.py (or, for a study in another study's folder, .../<study>/bad_inputs.py
    below tests/studies), imported once by its path as ``bad_inputs_<study>``."""
    name = f"bad_inputs_{study}"
    if name in sys.modules:
        return sys.modules[name]
    found = sorted(STUDY_TESTS.glob(f"**/{study}/bad_inputs.py"))
    if len(found) != 1:
        raise LookupError(f"study {study!r}: expected one {study}/bad_inputs.py below {STUDY_TESTS}, found {found}")
    spec = importlib.util.spec_from_file_location(name, found[0])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


# ---------------------------------------------------------------- what every case starts from


@dataclass
class Stock:
    """Small stand-ins of the datasets in their native formats (``raw/<dataset>``), and a small run's records and
    tables (``run``, for the ``medrepro`` command's cases)."""

    raw: Path
    run: Path | None = None

    def copy_raw(self, dataset: str, case: Path, user_copy: bool = False) -> Path:
        """A fresh copy of a stand-in; ``user_copy``: without the generator's files, as a real download."""
        target = case / "raw" / dataset
        shutil.copytree(self.raw / dataset, target)
        if user_copy:
            for name in ("MANIFEST.sha256", "synthetic_truth.csv"):
                (target / name).unlink(missing_ok=True)
        return target

    def copy_run(self, case: Path) -> None:
        shutil.copytree(self.run, case, dirs_exist_ok=True)


@contextlib.contextmanager
def _working_directory(path: Path):
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def make_run(root: Path) -> None:
    """raw/a.txt -> results/tables/t.csv (and its .md rendering) with per-row lineage, recorded like a workflow job."""
    (root / "raw").mkdir(parents=True)
    (root / "raw" / "a.txt").write_text("raw data A\n")

    def table(job: Job) -> None:
        pd.DataFrame({"name": ["a"], "value": [11]}).to_csv(job.output.csv, index=False)
        Path(job.output.md).write_text("| name | value |\n|---|---|\n| a | 11 |\n")
        job.cells = {"key_columns": ["name"], "rows": {"a": ["raw/a.txt"]}}

    with _working_directory(root):
        Path("results/tables").mkdir(parents=True)
        execute(Job(rule="table", input=_Namespace(a="raw/a.txt"),
                    output=_Namespace(csv="results/tables/t.csv", md="results/tables/t.md"),
                    params=_Namespace(), provenance_dir="results/provenance"), table)


# ---------------------------------------------------------------- config mistakes: the config check


def config_case(name: str, config: str, *names: str, max_chars: int = MAX_MESSAGE_CHARS,
                end_to_end: bool = False) -> BadInput:
    """``config`` is merged over config/config.yaml; the message names this file and the key.

    The workflow's config check runs in-process (``check_config_files``: the same merge, schema and checks as
    workflow/rules/common.smk, without starting Snakemake); ``end_to_end`` plans it with ``snakemake -n``
    instead, the way a user meets it (one case of each kind of mistake, besides tests/workflow/test_workflow.py)."""

    def run(case: Path, stock: Stock) -> Outcome:
        path = case / "config.yaml"
        path.write_text(config)
        if end_to_end:
            result = subprocess.run(
                [sys.executable, "-m", "snakemake", "-n", "--configfile", str(path), "--config",
                 f"results_dir={case / 'results'}"], cwd=REPO, capture_output=True, text=True, timeout=300)
            return Outcome(result.returncode, result.stderr + result.stdout,
                           [line for line in result.stderr.splitlines() if line.startswith(f"{path}: ")])
        try:
            check_config_files([REPO / "config/config.yaml", path], REPO / "workflow/schemas/config.schema.yaml")
        except ConfigError as problem:
            lines = str(problem).splitlines()
            return Outcome(1, str(problem), [line for line in lines if line.startswith(f"{path}: ")])
        return Outcome(0, "", [])

    return BadInput(name, run, (f"{{case}}/config.yaml: {names[0]}", *names[1:]), absent=("results",),
                    max_chars=max_chars)


# ---------------------------------------------------------------- data mistakes: a rule's step


@dataclass
class StepRun:
    rule: str
    step: str  # module:function, as in the rule's params.step
    output: dict
    params: dict
    input: dict | None = None
    wildcards: dict | None = None


def run_step(case: Path, run: StepRun, level: str) -> Outcome:
    """Run a step as scripts/step.py does, with its logging; restore the test's logging afterwards."""
    log_file = case / "results" / "logs" / f"{run.rule}.log"
    smk = type("Snakemake", (), {})()
    smk.rule, smk.threads, smk.log = run.rule, 1, Named(log=str(log_file))
    smk.input, smk.output = Named(**(run.input or {})), Named(**run.output)
    smk.params, smk.wildcards = Named(step=run.step, **run.params), Named(**(run.wildcards or {}))
    smk.resources, smk.config = Named(_cores=1), {"provenance_dir": str(case / "results" / "provenance")}
    root = logging.getLogger()
    handlers, level_before = root.handlers[:], root.level
    try:
        runner.run_step(smk)
        code = 0
    except SystemExit as exc:
        code = exc.code
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level_before)
    output = log_file.read_text()
    messages = [LOG_PREFIX.sub("", line) for line in output.splitlines()
                if (m := LOG_PREFIX.match(line)) and m["level"] == level]
    return Outcome(code, output, messages)


def step_case(name: str, prepare: Callable[[Path, Stock], StepRun], *names: str, exit_code: int = 1,
              level: str = "ERROR", max_chars: int = MAX_MESSAGE_CHARS, absent: tuple[str, ...] = ()) -> BadInput:
    """``prepare`` damages a copy of a stand-in and says which step to run on it; a failed step leaves no record."""

    def run(case: Path, stock: Stock) -> Outcome:
        return run_step(case, prepare(case, stock), level)

    no_record = ("results/provenance/jobs",) if exit_code else ()
    return BadInput(name, run, names, exit_code, absent + no_record, max_chars)


def nothing_obtained(dataset: str) -> tuple[str, ...]:
    """A failed obtain step writes neither its verified manifest nor a pin of the bad copy."""
    return (f"results/{dataset}/raw_manifest.sha256", "results/provenance/pins")


# ---- damage done to a copy (``relative``: below the copy's folder)


def truncate(relative: str, size: int = 100) -> Callable[[Path], None]:
    def damage(raw: Path) -> None:
        with open(raw / relative, "r+b") as handle:
            handle.truncate(size)

    return damage


def delete(relative: str) -> Callable[[Path], None]:
    def damage(raw: Path) -> None:
        target = raw / relative
        shutil.rmtree(target) if target.is_dir() else target.unlink()

    return damage


def overwrite(relative: str, content: bytes) -> Callable[[Path], None]:
    def damage(raw: Path) -> None:
        (raw / relative).write_bytes(content)

    return damage


def flip_a_byte(relative: str) -> Callable[[Path], None]:
    def damage(raw: Path) -> None:
        data = bytearray((raw / relative).read_bytes())
        data[-20] ^= 0xFF
        (raw / relative).write_bytes(bytes(data))

    return damage


def edit_text(relative: str, edit: Callable[[str], str]) -> Callable[[Path], None]:
    def damage(raw: Path) -> None:
        path = raw / relative
        path.write_text(edit(path.read_text()))

    return damage


# ---------------------------------------------------------------- the medrepro command


def cli_case(name: str, args: list[str], *names: str, prepare: Callable[[Path], None] | None = None,
             exit_code: int = 2, close_stdout: bool = False, absent: tuple[str, ...] = ()) -> BadInput:
    """``medrepro`` in a copy of a small run (``{case}`` in ``args`` is its folder). ``close_stdout``: the reader
    of the output went away before it was written (``| head``)."""

    def run(case: Path, stock: Stock) -> Outcome:
        stock.copy_run(case)
        if prepare:
            prepare(case)
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
        command = [sys.executable, "-m", "medrepro.pipeline.cli", *(fill(a, case) for a in args)]
        process = subprocess.Popen(command, cwd=case, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        if close_stdout:
            process.stdout.close()
            stderr = process.stderr.read().decode()
            process.wait(timeout=120)
        else:
            _, stderr_bytes = process.communicate(timeout=120)
            stderr = stderr_bytes.decode()
        return Outcome(process.returncode, stderr, [line for line in stderr.splitlines() if line.startswith("error: ")])

    return BadInput(name, run, names, exit_code, absent)
