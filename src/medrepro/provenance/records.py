"""Provenance: one record per executed job, and the chain behind any table cell.

Each job run through :func:`medrepro.pipeline.runner.run` writes a JSON record under
``<results>/provenance/jobs/`` once its outputs are complete. A record names
the rule and wildcards, every input and output with its sha256, the params
(the config values the rule was given), the seed, the code version (git commit
and whether the tree was dirty), package versions, the lock file's sha256 (with any
package installed at another version than it pins), host (with the SLURM job id,
node and allocated CPUs/GPUs when present), and start/end times. Tables
additionally record, per row, which inputs fed it, so the chain of a single cell
can be followed back to the raw files that no job produced.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from medrepro.data.atomic import write_json
from medrepro.errors import MedreproError
from medrepro.provenance.hashing import sha256_file

RECORD_VERSION = 1
# The checkout this code runs from (src/medrepro/provenance/records.py -> the repository root).
SOURCE_TREE = Path(__file__).resolve().parents[3]
TRACKED_PACKAGES = (
    "medrepro", "torch", "numpy", "scipy", "pandas", "scikit-learn", "SimpleITK",
    "itk-elastix", "medpy", "matplotlib", "pillow", "pydicom", "snakemake",
)


# ----------------------------------------------------------------- hashing
def describe_path(path: str | Path) -> dict:
    """sha256 of a file, or of a directory's sorted (relative path, sha256) list."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
        entries = [{"path": f.relative_to(p).as_posix(), "sha256": sha256_file(f), "bytes": f.stat().st_size}
                   for f in files]
        tree = hashlib.sha256("\n".join(f"{e['sha256']}  {e['path']}" for e in entries).encode())
        return {"path": normpath(p), "type": "directory", "sha256": tree.hexdigest(),
                "n_files": len(entries), "files": entries}
    if p.is_file():
        return {"path": normpath(p), "type": "file", "sha256": sha256_file(p), "bytes": p.stat().st_size}
    return {"path": normpath(p), "type": "missing", "sha256": None}


def normpath(path: str | Path) -> str:
    """Paths are recorded relative to the working directory when inside it."""
    p = Path(os.path.abspath(path))
    try:
        return p.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return p.as_posix()


# --------------------------------------------------------- environment
def code_version(repo_dir: str | Path | None = None) -> dict:
    """Git commit of the workflow's source tree and whether it had local changes."""
    repo_dir = Path(repo_dir or SOURCE_TREE)

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(repo_dir), *args], capture_output=True, text=True,
                                 timeout=20, check=True)
            return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    from medrepro import __version__

    return {"medrepro": __version__, "git_commit": commit,
            "git_dirty": None if status is None else bool(status), "source_dir": str(repo_dir)}


LOCK_FILE = "requirements.lock"
# Written by `make` into the environment it set up: the sha256 of the lock it installed from.
INSTALLED_LOCK_STAMP = "medrepro-lock.sha256"
_LOCK_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def locked_versions(lock_path: str | Path) -> dict[str, str]:
    """The exact versions a pip requirements lock file pins, by normalised package name."""
    return {normalise_package(name): version for name, version in _LOCK_PIN.findall(Path(lock_path).read_text())}


def normalise_package(name: str) -> str:
    """A package name as PEP 503 compares them (SimpleITK and simpleitk, ruamel_yaml and ruamel-yaml)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_state(packages: dict, repo_dir: str | Path | None = None) -> dict | None:
    """The lock file behind this environment: its sha256, the sha256 of the lock that `make` installed
    into this environment (None when it was set up otherwise, e.g. a conda env), and the tracked
    ``packages`` (name -> installed version) whose version differs from the lock. None outside a checkout."""
    lock = Path(repo_dir or SOURCE_TREE) / LOCK_FILE
    if not lock.is_file():
        return None
    locked = locked_versions(lock)
    differs = {name: {"locked": locked[key], "installed": version} for name, version in packages.items()
               if (key := normalise_package(name)) in locked and locked[key] != version}
    installed_from = Path(sys.prefix) / INSTALLED_LOCK_STAMP
    return {"file": LOCK_FILE, "sha256": sha256_file(lock),
            "installed_from": installed_from.read_text().strip() if installed_from.is_file() else None,
            "differs": differs}


def package_versions(names: Iterable[str] = TRACKED_PACKAGES) -> dict:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


# What a SLURM job step is given, as set by SLURM in its environment: where it ran
# and which CPUs and GPUs it had (SLURM_GPUS_ON_NODE only when GPUs were allocated).
SLURM_HOST_VARIABLES = (
    ("slurm_job_id", "SLURM_JOB_ID"),
    ("slurm_node", "SLURMD_NODENAME"),
    ("slurm_array_task_id", "SLURM_ARRAY_TASK_ID"),
    ("slurm_step_id", "SLURM_STEP_ID"),
    ("slurm_cluster_name", "SLURM_CLUSTER_NAME"),
    ("slurm_job_partition", "SLURM_JOB_PARTITION"),
    ("slurm_cpus_on_node", "SLURM_CPUS_ON_NODE"),
    ("slurm_gpus_on_node", "SLURM_GPUS_ON_NODE"),
    ("slurm_job_gpus", "SLURM_JOB_GPUS"),
    ("slurm_step_gpus", "SLURM_STEP_GPUS"),
)


def execution_host() -> dict:
    """Host name and platform; under SLURM the job, node and allocated CPUs/GPUs; visible CUDA devices."""
    host = {"hostname": socket.gethostname(), "platform": platform.platform(), "cpu_count": os.cpu_count()}
    for key, env in SLURM_HOST_VARIABLES:
        if os.environ.get(env):
            host[key] = os.environ[env]
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        host["cuda_visible_devices"] = os.environ["CUDA_VISIBLE_DEVICES"]
    return host


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def process_started() -> str:
    """When this process started (its interpreter, before any import): a job's record holds it beside the step's
    own start, so that start-up time (interpreter, Snakemake's script preamble, imports) shows per job."""
    import psutil

    started = _dt.datetime.fromtimestamp(psutil.Process().create_time(), _dt.timezone.utc)
    return started.isoformat(timespec="milliseconds")


def to_jsonable(value):
    """Snakemake Namedlists, numpy scalars and paths as plain JSON values."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    return str(value)


# -------------------------------------------------------------- records
def record_path(prov_dir: str | Path, rule: str, wildcards: dict) -> Path:
    tag = "__".join(f"{k}={v}" for k, v in sorted(wildcards.items()))
    safe = "".join(c if c.isalnum() or c in "-_=.+" else "_" for c in tag)
    return Path(prov_dir) / "jobs" / (f"{rule}__{safe}.json" if safe else f"{rule}.json")


def build_record(*, rule: str, wildcards: dict, inputs: list[str], outputs: list[str], params: dict,
                 threads: int | None, resources: dict, started: str, finished: str, log: list[str],
                 cells: dict | None = None, extra: dict | None = None, step: str | None = None,
                 process_started: str | None = None, warm_start: bool = False) -> dict:
    params = to_jsonable(params)
    packages = package_versions()
    record = {
        "record_version": RECORD_VERSION,
        "rule": rule,
        "step": step,
        "wildcards": to_jsonable(wildcards),
        "inputs": [describe_path(p) for p in inputs],
        "outputs": [describe_path(p) for p in outputs],
        "params": params,
        "seed": params.get("seed") if isinstance(params, dict) else None,
        "threads": threads,
        "resources": to_jsonable(resources),
        "code": code_version(),
        "packages": packages,
        "lock": lock_state(packages),
        "host": execution_host(),
        "process_started": process_started,
        "warm_start": warm_start,  # the step ran in a fork of the run's warm-start server (medrepro.pipeline.warm)
        "started": started,
        "finished": finished,
        "log": [normpath(p) for p in log],
    }
    if cells:
        record["cells"] = to_jsonable(cells)
    if extra:
        record["extra"] = to_jsonable(extra)
    return record


def write_record(prov_dir: str | Path, record: dict) -> Path:
    target = record_path(prov_dir, record["rule"], record["wildcards"])
    write_json(target, record)
    return target


# --------------------------------------------------------------- queries
@dataclass
class ProvenanceStore:
    """All job records of a results tree, indexed by the paths they produced."""

    records: list[dict]

    @classmethod
    def load(cls, prov_dir: str | Path) -> "ProvenanceStore":
        jobs = Path(prov_dir) / "jobs"
        if not jobs.is_dir():
            raise MedreproError(f"{jobs}: no such folder, so no provenance records; a run writes them to "
                                "<results_dir>/provenance/jobs")
        return cls([_read_record(p) for p in sorted(jobs.glob("*.json"))])

    def __post_init__(self):
        self._by_output: dict[str, dict] = {}
        for rec in self.records:
            for out in rec["outputs"]:
                self._by_output[out["path"]] = rec

    def producer(self, path: str | Path) -> tuple[dict, dict] | None:
        """The record that produced ``path`` (a file, a directory, or a file inside one)."""
        key = normpath(path)
        if key in self._by_output:
            rec = self._by_output[key]
            return rec, next(o for o in rec["outputs"] if o["path"] == key)
        for parent in Path(key).parents:
            rec = self._by_output.get(parent.as_posix())
            if rec is not None:
                return rec, next(o for o in rec["outputs"] if o["path"] == parent.as_posix())
        return None

    def chain(self, path: str | Path, only_inputs: list[str] | None = None) -> list[dict]:
        """Depth-first list of steps behind ``path``; each step lists its inputs' producers.

        Every file and directory on the way is described again and compared with
        the records: a job's output with the digest its job recorded
        (``recorded_sha256``/``current_sha256``), each input, and each source
        (a path no job made, such as a user's data copy) with the digest the job
        that read it recorded. ``changed`` marks any difference. A path is
        described once per chain, and each file hashed once per process
        (:mod:`medrepro.provenance.hashing` memoises by file state).
        """
        steps: list[dict] = []
        seen: set[str] = set()
        described: dict[str, dict] = {}

        def now(p: str) -> dict:
            if p not in described:
                described[p] = describe_path(p)
            return described[p]

        def compared(recorded_input: dict) -> dict:
            current = now(recorded_input["path"])["sha256"]
            return {**recorded_input, "current_sha256": current, "changed": current != recorded_input["sha256"]}

        def visit(p: str, recorded: str | None, restrict: list[str] | None, depth: int) -> None:
            found = self.producer(p)
            if found is None:
                current = now(normpath(p))
                steps.append({"depth": depth, "kind": "source", "path": normpath(p), "type": current["type"],
                              "sha256": current["sha256"], "current_sha256": current["sha256"],
                              "recorded_sha256": recorded,
                              "changed": recorded is not None and current["sha256"] != recorded})
                return
            rec, out = found
            rid = record_id(rec)
            if rid in seen:
                steps.append({"depth": depth, "kind": "seen", "path": out["path"], "record": rid})
                return
            seen.add(rid)
            inputs = rec["inputs"]
            if restrict is not None:
                wanted = {normpath(r) for r in restrict}
                inputs = [i for i in inputs if i["path"] in wanted]
            inputs = [compared(i) for i in inputs]
            current = now(out["path"])["sha256"]
            steps.append({"depth": depth, "kind": "job", "path": out["path"], "record": rid,
                          "recorded_sha256": out["sha256"], "current_sha256": current,
                          "changed": current != out["sha256"], "job": rec, "inputs": inputs})
            for inp in inputs:
                visit(inp["path"], inp["sha256"], None, depth + 1)

        visit(normpath(path), None, only_inputs, 0)
        return steps


def _read_record(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        rule = path.name.split("__")[0].removesuffix(".json")
        raise MedreproError(f"{path}: not a readable provenance record ({exc}); rerun its job to write it again: "
                            f"snakemake --cores 2 --forcerun {rule} (with the run's --configfile)") from exc


def record_id(rec: dict) -> str:
    wc = ",".join(f"{k}={v}" for k, v in sorted(rec["wildcards"].items()))
    return f"{rec['rule']}[{wc}]" if wc else rec["rule"]


# ---------------------------------------------------------- table cells
def read_table(table_path: str | Path):
    """A generated CSV table as a DataFrame; one clear error for a folder, another format or an unreadable file."""
    import pandas as pd

    path = Path(table_path)
    if path.is_dir():
        raise MedreproError(f"{path}: is a folder, not a table; give a CSV table from <results_dir>/tables/")
    if path.suffix.lower() != ".csv":
        sibling = path.with_suffix(".csv")
        hint = f"use {sibling}, the same table as CSV" if sibling.is_file() else "give one from <results_dir>/tables/"
        raise MedreproError(f"{path}: not a CSV table (cells are traced in the .csv tables); {hint}")
    try:
        return pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MedreproError(f"{path}: cannot be read as a CSV table ({reason})") from exc


def cell_value(table_path: str | Path, row: str, column: str, key_columns: list[str],
               table=None) -> tuple[str, object]:
    table = read_table(table_path) if table is None else table
    missing_keys = [c for c in key_columns if c not in table.columns]
    if missing_keys:
        raise MedreproError(f"{table_path}: key columns {', '.join(missing_keys)} are missing; the table was "
                            "changed after the run that wrote it (rerun the workflow)")
    if column not in table.columns:
        raise MedreproError(f"{table_path}: no column {column!r}; columns are {list(table.columns)}")
    keys = table[key_columns].astype(str).agg("/".join, axis=1)
    hits = table[keys == row]
    if hits.empty:
        rows = sorted(keys)
        shown = ", ".join(rows[:12]) + (f", ... ({len(rows)} rows)" if len(rows) > 12 else "")
        raise MedreproError(f"{table_path}: no row {row!r} (key columns {'/'.join(key_columns)}); rows: {shown}")
    return row, hits.iloc[0][column]


def explain_cell(prov_dir: str | Path, table_path: str | Path, row: str, column: str) -> dict:
    table = read_table(table_path)  # first: a wrong file is named as such, before any record is read
    store = ProvenanceStore.load(prov_dir)
    found = store.producer(table_path)
    if found is None:
        raise MedreproError(f"{table_path}: no provenance record in {prov_dir} produced this file")
    rec, _ = found
    cells = rec.get("cells", {})
    key_columns = cells.get("key_columns") or []
    if not key_columns:
        raise MedreproError(f"{table_path}: its record does not describe table rows")
    _, value = cell_value(table_path, row, column, key_columns, table=table)
    row_inputs = cells.get("rows", {}).get(row)
    steps = store.chain(table_path, only_inputs=row_inputs)
    return {"table": normpath(table_path), "row": row, "column": column, "value": to_jsonable(value),
            "key_columns": key_columns, "steps": steps}


def _differs(current: str | None) -> str:
    """Beside a recorded digest that no longer describes what is on disk: what is there now."""
    return f"DIFFERS FROM the content on disk, now {f'sha256 {current}' if current else 'missing'}"


def format_explanation(expl: dict, verbose_packages: bool = True) -> str:
    lines = [f"{expl['table']}  row {expl['row']}  column {expl['column']}  =  {expl['value']}", ""]
    for step in expl["steps"]:
        pad = "  " * step["depth"]
        if step["kind"] == "source":
            what = "directory" if step.get("type") == "directory" else "file"
            if step.get("changed"):
                digest = f"sha256 {step['recorded_sha256']} as recorded ({_differs(step['current_sha256'])})"
            elif step.get("recorded_sha256"):
                digest = f"sha256 {step['sha256']} (matches the record)"
            else:
                digest = f"sha256 {step['sha256']}"
            lines.append(f"{pad}- source {what} (no job made it): {step['path']}  {digest}")
            continue
        if step["kind"] == "seen":
            lines.append(f"{pad}- {step['path']}: made by {step['record']} (shown above)")
            continue
        rec = step["job"]
        match = "matches the file on disk" if not step["changed"] else _differs(step["current_sha256"])
        lines.append(f"{pad}- {step['path']}")
        lines.append(f"{pad}  made by rule {rec['rule']} {json.dumps(rec['wildcards'])}")
        if rec.get("step"):
            lines.append(f"{pad}  step {rec['step']}")
        lines.append(f"{pad}  output sha256 {step['recorded_sha256']} ({match})")
        lines.append(f"{pad}  started {rec['started']}  finished {rec['finished']}")
        code = rec["code"]
        dirty = {True: "dirty", False: "clean", None: "unknown"}[code.get("git_dirty")]
        lines.append(f"{pad}  code medrepro {code['medrepro']} git {code.get('git_commit')} ({dirty} tree)")
        seed = f"seed {rec['seed']}  " if rec.get("seed") is not None else ""
        lines.append(f"{pad}  {seed}params {json.dumps(rec['params'], sort_keys=True)}")
        host = rec["host"]
        where = host["hostname"] + (f" slurm job {host['slurm_job_id']} node {host.get('slurm_node')}"
                                    if host.get("slurm_job_id") else "")
        lines.append(f"{pad}  host {where}")
        if verbose_packages:
            pk = ", ".join(f"{k} {v}" for k, v in rec["packages"].items() if v)
            lines.append(f"{pad}  packages {pk}")
        if rec.get("extra", {}).get("device"):
            lines.append(f"{pad}  device {rec['extra']['device']}")
        for inp in step["inputs"]:
            files = f"  ({inp['n_files']} files, each hashed in the record)" if inp.get("type") == "directory" else ""
            lines.append(f"{pad}  input {inp['path']}  sha256 {inp['sha256']}{files}"
                         + (f"  ({_differs(inp['current_sha256'])})" if inp.get("changed") else ""))
    return "\n".join(lines)
