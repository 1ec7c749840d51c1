"""Export the provenance records as a Workflow Run RO-Crate (a zip file).

The crate conforms to the Process Run, Workflow Run and Provenance Run Crate
profiles (0.5) on RO-Crate 1.1 and Workflow RO-Crate 1.0:

* ``Snakefile`` is the main workflow (``File``, ``SoftwareSourceCode``,
  ``ComputationalWorkflow``, ``HowTo``; language Snakemake; ``version`` the git
  commit). It is embedded, as of that commit when the tree was clean.
* Each rule is a ``SoftwareApplication`` (``#rule/<rule>``, part of the
  workflow), with the packages its jobs imported (Python, numpy, torch, ...,
  each a ``SoftwareApplication`` with ``softwareVersion``) under
  ``softwareRequirements`` and the git commit as ``version``; a ``HowToStep``
  (``#step/<rule>``) points at it. Jobs of one rule that ran with other package
  versions or another commit get their own entity (``#rule/<rule>~2``, ...).
* Each job record is a ``CreateAction`` (``#job/<rule>/<wildcards>``) with its
  rule as ``instrument``, its input files and directories plus its params
  (``PropertyValue``) as ``object``, its outputs as ``result``, ``startTime``
  and ``endTime``; the SLURM job id, node, array task and allocation and the
  visible CUDA devices (when recorded) as ``environment`` ``PropertyValue`` s
  named after their variables, the host, threads, resources and extras under
  ``additionalProperty``. A
  ``ControlAction`` per job links the step to its action, an ``OrganizeAction``
  (Snakemake) the steps to the ``CreateAction`` of the whole run (``#run``),
  whose ``object`` are the files no job produced and whose ``result`` are the
  outputs no job consumed.
* Files are ``File`` entities with ``sha256`` and ``contentSize`` as recorded;
  directories are ``Dataset`` entities with the sha256 of their sorted
  ``<sha256>  <path>`` listing, and their files under ``hasPart`` (each with
  ``isPartOf`` its directory) when there are at most 200 of them. Data is
  referenced, not copied: such entities have the local identifier ``#<path>``
  and ``localPath`` the path from the repository root (RO-Crate's form for
  files deliberately left out). The zip holds only the metadata, a README, the
  Snakefile and the tables (CSV files under ``<results>/tables/``), each under
  its own path.
* Every number of a table whose record describes its rows is a
  ``PropertyValue`` ``#<table file>/<row key>/<column>`` with ``value``,
  ``propertyID`` (the column), ``name`` (``"<column> of <row key>"``),
  ``isPartOf`` the table file and ``isBasedOn`` the inputs that fed that row;
  it is listed in the ``result`` of the action that wrote the table.

Following a number back to the raw data: start at its ``PropertyValue``; its
``isBasedOn`` names the files its row was computed from (the ``object`` of the
``CreateAction`` whose ``result`` holds the number lists all inputs of that
job). For each file, find the ``CreateAction`` whose ``result`` holds the file,
or the directory ``Dataset`` that the file ``isPartOf``; that action's
``object`` lists what it read and the params it was given. Repeat until
reaching files that no action lists in its ``result``: the raw inputs. Each
entity on the way carries the sha256 recorded when the job ran.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import mimetypes
import os
import subprocess
import warnings
from collections import Counter
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from medrepro.data.atomic import atomic_path
from medrepro.errors import MedreproError
from medrepro.provenance.hashing import sha256_file
from medrepro.provenance.records import ProvenanceStore, record_id

RO_CRATE_VERSION = "1.1"
WFRUN_CONTEXT = "https://w3id.org/ro/terms/workflow-run/context"
PROFILES = (
    ("https://w3id.org/ro/wfrun/process/0.5", "Process Run Crate", "0.5"),
    ("https://w3id.org/ro/wfrun/workflow/0.5", "Workflow Run Crate", "0.5"),
    ("https://w3id.org/ro/wfrun/provenance/0.5", "Provenance Run Crate", "0.5"),
    ("https://w3id.org/workflowhub/workflow-ro-crate/1.0", "Workflow RO-Crate", "1.0"),
)
MAX_LISTED_FILES = 200
# Host keys of a record that copy an environment variable: every ``slurm_*`` key (named after its
# variable in upper case unless listed here) and the visible CUDA devices.
ENVIRONMENT_VARIABLES = {"slurm_node": "SLURMD_NODENAME", "cuda_visible_devices": "CUDA_VISIBLE_DEVICES"}
PACKAGE_URLS = {"python": "https://www.python.org/", "snakemake": "https://snakemake.readthedocs.io/"}
LICENSE = "https://spdx.org/licenses/MIT"
EXTRA_TERMS = {"localPath": "https://w3id.org/ro/terms#localPath",
               "environment": "https://w3id.org/ro/terms/workflow-run#environment"}
MEDIA_TYPES = {".log": "text/plain", ".sha256": "text/plain", ".md": "text/markdown", ".tex": "text/x-tex",
               ".npz": "application/zip", ".pt": "application/zip"}
COMPLETED = "http://schema.org/CompletedActionStatus"
_ID_SAFE = "/=,-_.~+@"


README = """# medrepro workflow run

Provenance of one run of the medrepro Snakemake workflow, as a Workflow Run RO-Crate
(Process, Workflow and Provenance Run Crate 0.5). `ro-crate-metadata.json` holds one
`CreateAction` per executed job (`#job/<rule>/<wildcards>`), with the sha256 of every input
and output, the params, the code version and the package versions; `#run` is the whole run.

Only the tables (`results/tables/*.csv`) and the `Snakefile` are included. Every other file is
an entity `#<path>` whose `localPath` is its path from the repository root, with the sha256
and size recorded when the job ran.

To follow a number of a table back to the raw data: find its `PropertyValue`
`#<table file>/<row key>/<column>`; its `isBasedOn` lists the files its row was computed
from. For each file, find the `CreateAction` whose `result` holds it (or holds the directory
the file `isPartOf`); that action's `object` lists the files it read and the params it was
given. Repeat until reaching files that no action lists in its `result`: the raw inputs.
"""


def export_crate(prov_dir: str | Path, out_zip: str | Path, results_dir: str | Path | None = None,
                 repo_dir: str | Path | None = None) -> Path:
    """Write the records under ``prov_dir`` as a Workflow Run RO-Crate zip to ``out_zip``.

    ``results_dir`` defaults to the parent of ``prov_dir``; ``repo_dir`` (the
    directory the workflow ran in, which record paths are relative to) to the
    nearest directory above ``results_dir`` holding a ``Snakefile``, else the
    parent of ``results_dir``. The zip appears only once it is complete; a
    target that cannot be written is refused before any work, naming the path.
    """
    prov_dir, out_zip = Path(prov_dir), Path(out_zip)
    check_zip_target(out_zip)
    store = ProvenanceStore.load(prov_dir)
    if not store.records:
        raise MedreproError(f"{prov_dir / 'jobs'}: no provenance records to export")
    results_dir = Path(results_dir) if results_dir is not None else prov_dir.parent
    root = Path(repo_dir) if repo_dir is not None else repository_root(results_dir)
    crate = _CrateBuilder(store.records, root.resolve(), results_dir.resolve()).build()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No source for")
        try:
            with atomic_path(out_zip) as tmp:
                crate.write_zip(tmp)
        except OSError as exc:  # a read-only or full file system: nothing is left behind by atomic_path
            raise MedreproError(f"{out_zip}: cannot write the crate there ({exc.strerror or exc}); "
                                "choose a writable place") from exc
    return out_zip


def check_zip_target(out_zip: Path) -> None:
    """Refuse a crate path that is a folder, or whose folder is missing or not writable."""
    folder = out_zip.parent
    if out_zip.is_dir():
        raise MedreproError(f"{out_zip}: is a folder; give a file name, e.g. {out_zip / 'provenance.crate.zip'}")
    if not folder.exists():
        raise MedreproError(f"{out_zip}: folder {folder} does not exist; create it or choose another path")
    if not folder.is_dir():
        raise MedreproError(f"{out_zip}: {folder} is not a folder; choose another path")
    if not os.access(folder, os.W_OK):
        raise MedreproError(f"{out_zip}: folder {folder} is not writable; choose a writable place")


def repository_root(results_dir: str | Path) -> Path:
    """The nearest directory at or above ``results_dir``'s parent that holds a Snakefile."""
    results_dir = Path(results_dir).resolve()
    for candidate in results_dir.parents:
        if (candidate / "Snakefile").is_file():
            return candidate
    return results_dir.parent


def _job_id(rec: dict) -> str:
    wc = ",".join(f"{k}={v}" for k, v in sorted(rec["wildcards"].items()))
    return "#job/" + quote(rec["rule"] + (f"/{wc}" if wc else ""), safe=_ID_SAFE)


def _media_type(path: str) -> str:
    kind, encoding = mimetypes.guess_type(path)
    if encoding == "gzip":
        return "application/gzip"
    return kind or MEDIA_TYPES.get(PurePosixPath(path).suffix.lower(), "application/octet-stream")


def _scalar(value):
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, sort_keys=True)


def _data_type(value) -> str:
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Float"
    return "Text"


class _CrateBuilder:
    def __init__(self, records: list[dict], root: Path, results_dir: Path):
        from rocrate.rocrate import ROCrate

        self.records = sorted(records, key=lambda r: (r.get("started") or "", record_id(r)))
        self.root = root
        try:
            self.tables_prefix = (results_dir / "tables").relative_to(root).as_posix() + "/"
        except ValueError:
            self.tables_prefix = (results_dir / "tables").as_posix() + "/"
        self.crate = ROCrate(version=RO_CRATE_VERSION)
        self.crate.metadata.extra_contexts.append(WFRUN_CONTEXT)
        self.crate.metadata.extra_terms.update(EXTRA_TERMS)
        self.known: dict[str, dict] = {}
        self.directories: set[str] = set()
        self.entities: dict[str, object] = {}
        self.software: dict[tuple[str, str], object] = {}
        self.tools: dict[tuple, object] = {}
        self.steps: dict[str, object] = {}
        self.formal: dict[tuple[str, str], object] = {}

    # ------------------------------------------------------------ paths
    def _key(self, path: str) -> str:
        """Record paths as keys: relative to the repository root where possible."""
        p = Path(path)
        if p.is_absolute():
            try:
                return p.relative_to(self.root).as_posix()
            except ValueError:
                return p.as_posix()
        return PurePosixPath(os.path.normpath(path)).as_posix()

    def _abs(self, key: str) -> Path:
        p = Path(key)
        return p if p.is_absolute() else self.root / p

    def _collect(self) -> None:
        """Descriptions of every path; what a job produced wins over what another read."""
        for kind in ("inputs", "outputs"):
            for rec in self.records:
                for desc in rec[kind]:
                    key = self._key(desc["path"])
                    self.known[key] = desc
                    if desc.get("type") == "directory":
                        self.directories.add(key)
        for key in sorted(self.directories):
            for entry in self.known[key].get("files", []):
                sub = f"{key}/{entry['path']}"
                self.known.setdefault(sub, {"path": sub, "type": "file", "sha256": entry["sha256"],
                                            "bytes": entry.get("bytes")})

    def _parent_directory(self, key: str) -> str | None:
        for parent in PurePosixPath(key).parents:
            if parent.as_posix() in self.directories:
                return parent.as_posix()
        return None

    # --------------------------------------------------------- entities
    def _context(self, identifier: str, properties: dict):
        from rocrate.model.contextentity import ContextEntity

        return self.crate.add(ContextEntity(self.crate, identifier, properties=properties))

    def _pv(self, identifier: str, name: str, value, **extra):
        props = {"@type": "PropertyValue", "name": name, **extra}
        value = _scalar(value)
        if value is not None:
            props["value"] = value
        return self._context(identifier, props)

    def data_entity(self, path: str):
        """The File or Dataset entity of a recorded path, created on first use.

        Tables are carried in the crate under their own path; everything else
        is referenced: ``#<path>`` with ``localPath`` the path from the
        repository root (RO-Crate's form for files deliberately not included).
        """
        from rocrate.model.file import File

        key = self._key(path)
        if key in self.entities:
            return self.entities[key]
        desc = self.known.get(key)
        if desc is None:
            desc = self._describe_now(key)
            self.known[key] = desc
        is_dir = desc.get("type") == "directory"
        local_path = key + "/" if is_dir else key
        props = {"name": PurePosixPath(key).name or key}
        if desc.get("sha256"):
            props["sha256"] = desc["sha256"]
        if desc.get("bytes") is not None:
            props["contentSize"] = str(desc["bytes"])
        if desc.get("type") == "missing":
            props["description"] = "Missing when the job that names it was recorded."
        if not is_dir:
            props["encodingFormat"] = _media_type(key)
        if not is_dir and self._embeds(key, desc):
            entity = self.crate.add(File(self.crate, source=self._abs(key), dest_path=key, properties=props))
        else:
            entity = self._context("#" + quote(local_path, safe=_ID_SAFE),
                                   {"@type": "Dataset" if is_dir else "File", "localPath": local_path, **props})
        self.entities[key] = entity
        if is_dir:
            self._fill_directory(key, entity, desc)
        parent = self._parent_directory(key)
        if parent is not None and parent != key:
            entity["isPartOf"] = self.data_entity(parent)
        return entity

    def _describe_now(self, key: str) -> dict:
        p = self._abs(key)
        if p.is_file():
            return {"path": key, "type": "file", "sha256": sha256_file(p), "bytes": p.stat().st_size}
        return {"path": key, "type": "missing", "sha256": None}

    def _embeds(self, key: str, desc: dict) -> bool:
        """Tables are carried in the crate when the file on disk is the one recorded."""
        if not (key.startswith(self.tables_prefix) and key.endswith(".csv")):
            return False
        p = self._abs(key)
        if not p.is_file():
            return False
        if sha256_file(p) != desc.get("sha256"):
            warnings.warn(f"{key}: changed since it was recorded; referenced, not included")
            return False
        return True

    def _fill_directory(self, key: str, entity, desc: dict) -> None:
        n_files = desc.get("n_files", len(desc.get("files", [])))
        entity["description"] = (f"Directory of {n_files} files; sha256 is the digest of its sorted "
                                 "'<sha256>  <relative path>' listing.")
        entity["additionalProperty"] = self._pv(f"#n_files/{quote(key, safe=_ID_SAFE)}", "n_files", n_files,
                                                propertyID="n_files")
        if n_files <= MAX_LISTED_FILES:
            parts = []
            for f in desc.get("files", []):
                part = self.data_entity(f"{key}/{f['path']}")
                parts.append(part)
            if parts:
                entity["hasPart"] = parts

    # ---------------------------------------------------------- software
    def _package(self, name: str, version: str):
        ident = "#software/" + quote(f"{name}/{version}", safe=_ID_SAFE)
        if (name, version) not in self.software:
            props = {"@type": "SoftwareApplication", "name": name, "softwareVersion": str(version)}
            url = PACKAGE_URLS.get(name) or (None if name == "medrepro" else f"https://pypi.org/project/{name}/")
            if url:
                props["url"] = url
            self.software[(name, version)] = self._context(ident, props)
        return self.software[(name, version)]

    def _tool(self, rec: dict, workflow):
        rule = rec["rule"]
        code = rec.get("code", {})
        packages = tuple(sorted((k, str(v)) for k, v in rec.get("packages", {}).items() if v))
        variant = (rule, packages, code.get("git_commit"), code.get("git_dirty"))
        if variant in self.tools:
            return self.tools[variant]
        n = sum(1 for v in self.tools if v[0] == rule)
        ident = "#rule/" + quote(rule, safe=_ID_SAFE) + (f"~{n + 1}" if n else "")
        dirty = {True: "dirty tree", False: "clean tree", None: "tree state unknown"}[code.get("git_dirty")]
        props = {"@type": "SoftwareApplication", "name": f"rule {rule}",
                 "description": f"Snakemake rule {rule} of the medrepro workflow"
                                + (f", running the step {rec['step']}" if rec.get("step") else "")
                                + f" (medrepro {code.get('medrepro')}, git {code.get('git_commit')}, {dirty}).",
                 "softwareRequirements": [self._package(k, v) for k, v in packages]}
        if code.get("git_commit"):
            props["version"] = code["git_commit"]
        tool = self._context(ident, props)
        self.tools[variant] = tool
        workflow.append_to("hasPart", tool)
        step = self.steps.get(rule)
        if step is None:
            step = self._context("#step/" + quote(rule, safe=_ID_SAFE),
                                 {"@type": "HowToStep", "name": rule, "position": str(len(self.steps))})
            self.steps[rule] = step
            workflow.append_to("step", step)
        step.append_to("workExample", tool)
        return tool

    def _formal_parameter(self, rule: str, name: str, value, tool):
        key = (rule, name)
        if key not in self.formal:
            self.formal[key] = self._context(
                f"#rule/{quote(rule, safe=_ID_SAFE)}/param/{quote(name, safe=_ID_SAFE)}",
                {"@type": "FormalParameter", "name": name, "additionalType": _data_type(value),
                 "conformsTo": {"@id": "https://bioschemas.org/profiles/FormalParameter/1.0-RELEASE"}})
        param = self.formal[key]
        if {"@id": param.id} not in tool._jsonld.get("input", []):
            tool.append_to("input", param)
        return param

    # ----------------------------------------------------------- actions
    def _job_action(self, rec: dict, workflow):
        tool = self._tool(rec, workflow)
        ident = _job_id(rec)
        action = self._context(ident, {
            "@type": "CreateAction", "name": record_id(rec),
            "description": f"Job of rule {rec['rule']} with wildcards "
                           f"{json.dumps(rec['wildcards'], sort_keys=True)}",
            "actionStatus": COMPLETED,
        })
        action["instrument"] = tool
        if rec.get("started"):
            action["startTime"] = rec["started"]
        if rec.get("finished"):
            action["endTime"] = rec["finished"]
        objects = [self.data_entity(i["path"]) for i in rec["inputs"]]
        params = rec.get("params") if isinstance(rec.get("params"), dict) else {}
        for name, value in params.items():
            objects.append(self._pv(f"{ident}/param/{quote(name, safe=_ID_SAFE)}", name, value,
                                    exampleOfWork=self._formal_parameter(rec["rule"], name, value, tool)))
        action["object"] = objects
        action["result"] = [self.data_entity(o["path"]) for o in rec["outputs"]]

        host = rec.get("host", {})
        from_env = {k: ENVIRONMENT_VARIABLES.get(k, k.upper()) for k in host
                    if k.startswith("slurm_") or k in ENVIRONMENT_VARIABLES}
        env = [self._pv(f"{ident}/env/{quote(var, safe=_ID_SAFE)}", var, host[k], propertyID=k)
               for k, var in from_env.items() if host[k] is not None]
        if env:
            action["environment"] = env
        extra = [(f"host/{k}", k, v) for k, v in host.items() if k not in from_env]
        extra.append(("threads", "threads", rec.get("threads")))
        extra += [(f"resources/{k}", f"resources.{k}", v) for k, v in (rec.get("resources") or {}).items()]
        extra += [(f"extra/{k}", k, v) for k, v in (rec.get("extra") or {}).items()]
        action["additionalProperty"] = [self._pv(f"{ident}/{quote(suffix, safe=_ID_SAFE)}", name, value,
                                                 propertyID=name)
                                        for suffix, name, value in extra if value is not None]
        for log in rec.get("log", []):
            key = self._key(log)
            if self._abs(key).is_file():
                entity = self.data_entity(key)
                entity["about"] = action
                entity["description"] = "Log of the job; sha256 taken when the crate was written."
        return action

    def _cells(self, rec: dict, action) -> None:
        import pandas as pd

        cells = rec.get("cells") or {}
        key_columns = cells.get("key_columns") or []
        if not key_columns:
            return
        csvs = [self._key(o["path"]) for o in rec["outputs"] if o["path"].endswith(".csv")]
        tables = [k for k in csvs if k.startswith(self.tables_prefix)] or csvs[:1]
        rows_inputs = cells.get("rows") or {}
        for key in tables:
            entity = self.data_entity(key)
            path = self._abs(key)
            if not path.is_file() or sha256_file(path) != self.known[key].get("sha256"):
                warnings.warn(f"{key}: not the recorded table; its numbers are left out")
                continue
            table = pd.read_csv(path)
            if not set(key_columns) <= set(table.columns):
                continue
            keys = table[key_columns].astype(str).agg("/".join, axis=1)
            numeric = [c for c in table.columns if c not in key_columns
                       and pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])]
            name = PurePosixPath(key).name
            seen: set[str] = set()
            values = []
            for i, row in enumerate(keys):
                if row in seen:
                    continue
                seen.add(row)
                based_on = [self.data_entity(p) for p in rows_inputs.get(row, [])]
                for column in numeric:
                    value = table[column].iloc[i]
                    if pd.isna(value):
                        continue
                    pv = self._pv("#" + quote(f"{name}/{row}/{column}", safe=_ID_SAFE),
                                  f"{column} of {row}", value.item() if hasattr(value, "item") else value,
                                  propertyID=column)
                    pv["isPartOf"] = entity
                    if based_on:
                        pv["isBasedOn"] = based_on
                    values.append(pv)
            action.append_to("result", values)

    # ------------------------------------------------------------ the crate
    def _workflow(self):
        from rocrate.model.computationalworkflow import ComputationalWorkflow

        latest = max(self.records, key=lambda r: r.get("finished") or "")
        code = latest.get("code", {})
        commit = code.get("git_commit")
        source, note = self._snakefile(commit, code.get("git_dirty"))
        snakemake = Counter(r.get("packages", {}).get("snakemake") for r in self.records).most_common(1)[0][0]
        props = {"name": "medrepro workflow", "description": note, "encodingFormat": "text/plain"}
        if commit:
            props["version"] = commit
        if source is not None:
            props["sha256"] = hashlib.sha256(source).hexdigest()
            props["contentSize"] = str(len(source))
        workflow = self.crate.add_workflow(
            source=io.BytesIO(source) if source is not None else None, dest_path="Snakefile",
            main=True, lang="snakemake", lang_version=snakemake, properties=props,
            cls=ComputationalWorkflow)
        workflow._jsonld["@type"] = ["File", "SoftwareSourceCode", "ComputationalWorkflow", "HowTo"]
        return workflow

    def _snakefile(self, commit: str | None, dirty: bool | None) -> tuple[bytes | None, str]:
        current = self.root / "Snakefile"
        if commit and dirty is False:
            try:
                out = subprocess.run(["git", "-C", str(self.root), "show", f"{commit}:./Snakefile"],
                                     capture_output=True, timeout=20, check=True)
                return out.stdout, f"The Snakefile at git commit {commit}, which the jobs ran from."
            except (OSError, subprocess.SubprocessError):
                pass
        if current.is_file():
            return current.read_bytes(), ("The Snakefile as it was when the crate was written; the jobs ran from "
                                          f"git commit {commit} ({'dirty' if dirty else 'tree state unknown'}).")
        return None, "The Snakefile, not found when the crate was written."

    def build(self):
        crate = self.crate
        self._collect()
        root = crate.root_dataset
        root["name"] = "medrepro workflow run"
        root["description"] = (
            "Provenance of a medrepro workflow run: one CreateAction per executed Snakemake job, with the "
            "sha256 of every input and output, params, code version, package versions and host. File "
            "@ids are paths from the repository root; only the tables are included. Every number of a "
            "generated table is a PropertyValue in the result of the job that wrote it.")
        root["datePublished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        root["license"] = self._context(LICENSE, {"@type": "CreativeWork", "name": "MIT License"})
        workflow = self._workflow()
        for url, name, version in PROFILES:
            root.append_to("conformsTo", self._context(url, {"@type": "CreativeWork", "name": name,
                                                             "version": version}))

        actions, controls = [], []
        produced, consumed = set(), set()
        for rec in self.records:
            action = self._job_action(rec, workflow)
            self._cells(rec, action)
            actions.append(action)
            controls.append(self._context("#control/" + _job_id(rec)[len("#job/"):], {
                "@type": "ControlAction", "name": f"orchestrate {record_id(rec)}",
                "instrument": self.steps[rec["rule"]], "object": action}))
            produced.update(self._key(o["path"]) for o in rec["outputs"])
            consumed.update(self._key(i["path"]) for i in rec["inputs"])

        def is_produced(key: str) -> bool:
            return key in produced or any(p.as_posix() in produced for p in PurePosixPath(key).parents)

        starts = [r["started"] for r in self.records if r.get("started")]
        ends = [r["finished"] for r in self.records if r.get("finished")]
        run = self._context("#run", {
            "@type": "CreateAction", "name": "Run of the medrepro workflow (Snakefile)",
            "description": f"{len(self.records)} jobs of {len(self.steps)} rules.",
            "actionStatus": COMPLETED})
        run["instrument"] = workflow
        if starts:
            run["startTime"] = min(starts)
        if ends:
            run["endTime"] = max(ends)
        run["object"] = [self.data_entity(k) for k in sorted(consumed) if not is_produced(k)]
        run["result"] = [self.data_entity(k) for k in sorted(produced) if k not in consumed]

        version = workflow["programmingLanguage"].get("version")
        engine = self._package("snakemake", version) if version else self._context(
            "#software/snakemake", {"@type": "SoftwareApplication", "name": "snakemake"})
        organize = self._context("#engine-run", {"@type": "OrganizeAction", "name": "Run of Snakemake"})
        organize["instrument"] = engine
        organize["object"] = controls
        organize["result"] = run
        if starts:
            organize["startTime"] = min(starts)
        if ends:
            organize["endTime"] = max(ends)
        root["mentions"] = [run, *actions]
        self._readme(root)
        _compact(crate)
        return crate

    def _readme(self, root) -> None:
        from rocrate.model.file import File

        text = README.encode()
        crate = self.crate
        crate.add(File(crate, source=io.BytesIO(text), dest_path="README.md", properties={
            "name": "README.md", "about": root, "encodingFormat": "text/markdown",
            "sha256": hashlib.sha256(text).hexdigest(), "contentSize": str(len(text))}))


def _compact(crate) -> None:
    """Single references as plain values rather than one-element lists (RO-Crate's JSON-LD style)."""
    for entity in crate.get_entities():
        for key, value in list(entity._jsonld.items()):
            if not key.startswith("@") and isinstance(value, list) and len(value) == 1:
                entity._jsonld[key] = value[0]
