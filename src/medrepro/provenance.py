"""Provenance: one record per executed job, and the chain behind any table cell.

Each job run through :func:`medrepro.runner.run` writes a JSON record under
``<results>/provenance/jobs/`` once its outputs are complete. A record names
the rule and wildcards, every input and output with its sha256, the params
(the config values the rule was given), the seed, the code version (git commit
and whether the tree was dirty), package versions, host (with the SLURM job id,
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
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from medrepro.atomic import write_json
from medrepro.errors import MedreproError
from medrepro.hashing import sha256_file

RECORD_VERSION = 1
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
    repo_dir = Path(repo_dir or Path(__file__).resolve().parents[2])

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
                 cells: dict | None = None, extra: dict | None = None, step: str | None = None) -> dict:
    params = to_jsonable(params)
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
        "packages": package_versions(),
        "host": execution_host(),
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
            raise MedreproError(f"{jobs}: no provenance records (has the workflow run?)")
        records = [json.loads(p.read_text()) for p in sorted(jobs.glob("*.json"))]
        return cls(records)

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
        """Depth-first list of steps behind ``path``; each step lists its inputs' producers."""
        steps: list[dict] = []
        seen: set[str] = set()

        def visit(p: str, restrict: list[str] | None, depth: int) -> None:
            found = self.producer(p)
            if found is None:
                steps.append({"depth": depth, "kind": "source", "path": normpath(p),
                              "sha256": describe_path(p).get("sha256")})
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
            steps.append({"depth": depth, "kind": "job", "path": out["path"], "record": rid,
                          "recorded_sha256": out["sha256"], "current_sha256": describe_path(out["path"])["sha256"]
                          if Path(out["path"]).is_file() else out["sha256"], "job": rec, "inputs": inputs})
            for inp in inputs:
                visit(inp["path"], None, depth + 1)

        visit(normpath(path), only_inputs, 0)
        return steps


def record_id(rec: dict) -> str:
    wc = ",".join(f"{k}={v}" for k, v in sorted(rec["wildcards"].items()))
    return f"{rec['rule']}[{wc}]" if wc else rec["rule"]


# ---------------------------------------------------------- table cells
def cell_value(table_path: str | Path, row: str, column: str, key_columns: list[str]) -> tuple[str, object]:
    import pandas as pd

    table = pd.read_csv(table_path)
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
    store = ProvenanceStore.load(prov_dir)
    found = store.producer(table_path)
    if found is None:
        raise MedreproError(f"{table_path}: no provenance record produced this file")
    rec, _ = found
    cells = rec.get("cells", {})
    key_columns = cells.get("key_columns") or []
    if not key_columns:
        raise MedreproError(f"{table_path}: its record does not describe table rows")
    _, value = cell_value(table_path, row, column, key_columns)
    row_inputs = cells.get("rows", {}).get(row)
    steps = store.chain(table_path, only_inputs=row_inputs)
    return {"table": normpath(table_path), "row": row, "column": column, "value": to_jsonable(value),
            "key_columns": key_columns, "steps": steps}


def format_explanation(expl: dict, verbose_packages: bool = True) -> str:
    lines = [f"{expl['table']}  row {expl['row']}  column {expl['column']}  =  {expl['value']}", ""]
    for step in expl["steps"]:
        pad = "  " * step["depth"]
        if step["kind"] == "source":
            lines.append(f"{pad}- source file (no job made it): {step['path']}  sha256 {step['sha256']}")
            continue
        if step["kind"] == "seen":
            lines.append(f"{pad}- {step['path']}: made by {step['record']} (shown above)")
            continue
        rec = step["job"]
        match = "matches" if step["current_sha256"] == step["recorded_sha256"] else "DIFFERS FROM"
        lines.append(f"{pad}- {step['path']}")
        lines.append(f"{pad}  made by rule {rec['rule']} {json.dumps(rec['wildcards'])}")
        if rec.get("step"):
            lines.append(f"{pad}  step {rec['step']}")
        lines.append(f"{pad}  output sha256 {step['recorded_sha256']} ({match} the file on disk)")
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
            lines.append(f"{pad}  input {inp['path']}  sha256 {inp['sha256']}{files}")
    return "\n".join(lines)
