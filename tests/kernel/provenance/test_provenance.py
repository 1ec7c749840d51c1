"""Provenance records and the chain behind a table cell, on a hand-built three-step chain."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from medrepro.provenance import records as provenance
from medrepro.pipeline.cli import main as cli_main
from medrepro.errors import MedreproError
from medrepro.pipeline.runner import Job, _Namespace, execute


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _job(rule, inputs, outputs, params=None, wildcards=None):
    return Job(rule=rule, input=_Namespace(inputs), output=_Namespace(outputs),
               params=_Namespace(params or {}), wildcards=_Namespace(wildcards or {}),
               provenance_dir="results/provenance")


def _make_chain(root):
    """raw file -> per-dataset scores (two jobs) -> table with per-row lineage."""
    (root / "raw").mkdir()
    (root / "raw" / "a.txt").write_text("raw data A\n")
    (root / "raw" / "b.txt").write_text("raw data B\n")

    def score(job):
        value = len(open(job.input.raw).read())
        pd.DataFrame({"value": [value]}).to_csv(job.output.scores, index=False)

    for name in ("a", "b"):
        os.makedirs("results/scores", exist_ok=True)
        execute(_job("score", {"raw": f"raw/{name}.txt"}, {"scores": f"results/scores/{name}.csv"},
                     params={"seed": 7, "factor": 2}, wildcards={"name": name}), score)

    def table(job):
        rows = [{"name": k, "value": pd.read_csv(v)["value"][0]} for k, v in job.input.items()]
        pd.DataFrame(rows).to_csv(job.output.csv, index=False)
        job.cells = {"key_columns": ["name"], "rows": {k: [v] for k, v in job.input.items()}}

    os.makedirs("results/tables", exist_ok=True)
    execute(_job("table", {"a": "results/scores/a.csv", "b": "results/scores/b.csv"},
                 {"csv": "results/tables/t.csv"}, params={"seed": 7}), table)


def test_record_has_hashes_params_code_and_packages(workdir):
    _make_chain(workdir)
    rec = json.loads((workdir / "results/provenance/jobs/score__name=a.json").read_text())
    assert rec["rule"] == "score" and rec["wildcards"] == {"name": "a"}
    assert rec["inputs"][0]["sha256"] == hashlib.sha256(b"raw data A\n").hexdigest()
    assert rec["outputs"][0]["sha256"] == provenance.sha256_file(workdir / "results/scores/a.csv")
    assert rec["params"] == {"seed": 7, "factor": 2} and rec["seed"] == 7
    assert {"git_commit", "git_dirty", "medrepro"} <= set(rec["code"])
    assert rec["packages"]["numpy"] and rec["packages"]["python"]
    assert rec["started"] <= rec["finished"]


def test_cell_chain_follows_only_the_rows_inputs(workdir):
    _make_chain(workdir)
    expl = provenance.explain_cell("results/provenance", "results/tables/t.csv", "b", "value")
    assert expl["value"] == len("raw data B\n")
    paths = [s["path"] for s in expl["steps"]]
    assert paths == ["results/tables/t.csv", "results/scores/b.csv", "raw/b.txt"]
    assert expl["steps"][-1]["kind"] == "source"
    assert expl["steps"][-1]["sha256"] == hashlib.sha256(b"raw data B\n").hexdigest()


def test_cli_prints_value_and_chain(workdir, capsys):
    _make_chain(workdir)
    assert cli_main(["provenance", "results/tables/t.csv", "--row", "a", "--column", "value"]) == 0
    out = capsys.readouterr().out
    assert "=  11" in out and "rule score" in out and "raw/a.txt" in out and "seed 7" in out


def test_changed_output_is_flagged(workdir):
    _make_chain(workdir)
    (workdir / "results/scores/a.csv").write_text("value\n999\n")
    expl = provenance.explain_cell("results/provenance", "results/tables/t.csv", "a", "value")
    step = expl["steps"][1]
    assert step["current_sha256"] != step["recorded_sha256"]
    assert "DIFFERS FROM" in provenance.format_explanation(expl)


def test_unknown_row_and_column_are_clear_errors(workdir, capsys):
    _make_chain(workdir)
    with pytest.raises(MedreproError, match="no row 'c'"):
        provenance.explain_cell("results/provenance", "results/tables/t.csv", "c", "value")
    with pytest.raises(MedreproError, match="no column 'nope'"):
        provenance.explain_cell("results/provenance", "results/tables/t.csv", "a", "nope")
    assert cli_main(["provenance", "results/tables/missing.csv", "--row", "a", "--column", "value"]) == 2
    assert "no such table" in capsys.readouterr().err


def test_failed_step_writes_no_record(workdir):
    def broken(job):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        execute(_job("broken", {}, {"out": "results/x.txt"}), broken)
    assert not (workdir / "results/provenance/jobs/broken.json").exists()


def test_directory_digest_changes_with_content(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("1")
    first = provenance.describe_path(tmp_path / "d")
    (tmp_path / "d" / "f").write_text("2")
    second = provenance.describe_path(tmp_path / "d")
    assert first["type"] == "directory" and first["n_files"] == 1
    assert first["sha256"] != second["sha256"]


def test_slurm_environment_is_recorded(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURMD_NODENAME", "gpu-node-3")
    host = provenance.execution_host()
    assert host["slurm_job_id"] == "4242" and host["slurm_node"] == "gpu-node-3"


def test_slurm_allocation_is_recorded_only_when_present(monkeypatch):
    for _, env in provenance.SLURM_HOST_VARIABLES:
        monkeypatch.delenv(env, raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert set(provenance.execution_host()) == {"hostname", "platform", "cpu_count"}
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_JOB_PARTITION", "gpu")
    monkeypatch.setenv("SLURM_GPUS_ON_NODE", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    host = provenance.execution_host()
    assert (host["slurm_job_partition"], host["slurm_gpus_on_node"], host["cuda_visible_devices"]) == ("gpu", "1", "0")


def test_atomic_outputs_get_the_usual_permissions(tmp_path):
    from medrepro.data.atomic import atomic_dir, write_text

    old = os.umask(0o022)
    try:
        write_text(tmp_path / "f.txt", "x")
        with atomic_dir(tmp_path / "d") as d:
            (d / "inner").write_text("y")
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    from medrepro.data.atomic import atomic_path

    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out.csv") as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_file_digest_is_recomputed_when_the_file_changes(tmp_path):
    from medrepro.provenance.hashing import sha256_file

    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    assert sha256_file(path) == hashlib.sha256(b"abc").hexdigest()
    path.write_bytes(b"abcd")  # new size, so a new memo key
    assert sha256_file(path) == hashlib.sha256(b"abcd").hexdigest()


# ------------------------------------------------- changed inputs, files and directories
def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tree_sha(files: dict[str, bytes]) -> str:
    """A directory's digest computed independently: sha256 of its sorted '<sha256>  <path>' lines."""
    return _sha("\n".join(f"{_sha(data)}  {rel}" for rel, data in sorted(files.items())).encode())


def _make_directory_chain(root):
    """A user's copy (source directory) -> a generated directory -> a table reading both."""
    (root / "copy").mkdir()
    (root / "copy" / "scan.txt").write_text("scan 1\n")
    os.makedirs("results/tables", exist_ok=True)

    def convert(job):
        out = root / job.output.converted
        out.mkdir(parents=True)
        (out / "x.txt").write_text((root / job.input.user_copy / "scan.txt").read_text().upper())
        (out / "y.txt").write_text("second file\n")

    execute(_job("convert", {"user_copy": "copy"}, {"converted": "results/converted"}), convert)

    def table(job):
        pd.DataFrame({"name": ["x"], "value": [1]}).to_csv(job.output.csv, index=False)
        job.cells = {"key_columns": ["name"], "rows": {"x": [job.input.converted, job.input.user_copy]}}

    execute(_job("table", {"converted": "results/converted", "user_copy": "copy"}, {"csv": "results/tables/d.csv"}),
            table)


def _step(expl, path):
    """The first step for ``path`` (a source read by two jobs appears under each)."""
    return next(s for s in expl["steps"] if s["path"] == path and s["kind"] != "seen")


def test_an_unchanged_chain_flags_nothing(workdir):
    _make_directory_chain(workdir)
    expl = provenance.explain_cell("results/provenance", "results/tables/d.csv", "x", "value")
    assert not any(s.get("changed") for s in expl["steps"])
    assert not any(i["changed"] for s in expl["steps"] if s["kind"] == "job" for i in s["inputs"])
    assert "DIFFERS FROM" not in provenance.format_explanation(expl)
    copy = _step(expl, "copy")
    assert copy["kind"] == "source" and copy["recorded_sha256"] == copy["current_sha256"] == _tree_sha(
        {"scan.txt": b"scan 1\n"})


def test_a_changed_file_input_is_flagged_with_both_digests(workdir):
    _make_chain(workdir)
    (workdir / "raw" / "a.txt").write_text("raw data A, edited\n")
    expl = provenance.explain_cell("results/provenance", "results/tables/t.csv", "a", "value")
    source = _step(expl, "raw/a.txt")
    assert source["changed"] and source["recorded_sha256"] == _sha(b"raw data A\n")
    assert source["current_sha256"] == _sha(b"raw data A, edited\n")
    (read,) = _step(expl, "results/scores/a.csv")["inputs"]
    assert read["changed"] and read["current_sha256"] == _sha(b"raw data A, edited\n")
    text = provenance.format_explanation(expl)
    assert f"raw/a.txt  sha256 {_sha(b'raw data A' + bytes([10]))} as recorded (DIFFERS FROM the content on disk, " \
           f"now sha256 {_sha(b'raw data A, edited' + bytes([10]))})" in text
    other = provenance.explain_cell("results/provenance", "results/tables/t.csv", "b", "value")
    assert not any(s.get("changed") for s in other["steps"])  # row b never read the edited file


def test_a_changed_directory_made_by_a_job_is_flagged(workdir):
    _make_directory_chain(workdir)
    recorded = _tree_sha({"x.txt": b"SCAN 1\n", "y.txt": b"second file\n"})
    (workdir / "results" / "converted" / "y.txt").write_text("second file, edited\n")
    expl = provenance.explain_cell("results/provenance", "results/tables/d.csv", "x", "value")
    converted = _step(expl, "results/converted")
    assert converted["kind"] == "job" and converted["changed"]
    assert converted["recorded_sha256"] == recorded
    assert converted["current_sha256"] == _tree_sha({"x.txt": b"SCAN 1\n", "y.txt": b"second file, edited\n"})
    table_inputs = {i["path"]: i for i in _step(expl, "results/tables/d.csv")["inputs"]}
    assert table_inputs["results/converted"]["changed"] and not table_inputs["copy"]["changed"]
    text = provenance.format_explanation(expl)
    assert f"output sha256 {recorded} (DIFFERS FROM the content on disk, now sha256 " in text
    assert "input results/converted" in text and text.count("DIFFERS FROM") == 2  # its output, and as an input


def test_a_changed_source_directory_is_flagged_in_text_and_json(workdir, capsys):
    _make_directory_chain(workdir)
    (workdir / "copy" / "added.txt").write_text("a file that was not there\n")
    expl = provenance.explain_cell("results/provenance", "results/tables/d.csv", "x", "value")
    copy = _step(expl, "copy")
    assert copy["changed"] and copy["type"] == "directory"
    assert copy["recorded_sha256"] == _tree_sha({"scan.txt": b"scan 1\n"})
    assert copy["current_sha256"] == _tree_sha({"scan.txt": b"scan 1\n", "added.txt": b"a file that was not there\n"})
    assert "- source directory (no job made it): copy  sha256 " in provenance.format_explanation(expl)
    assert cli_main(["provenance", "results/tables/d.csv", "--row", "x", "--column", "value", "--json"]) == 0
    steps = json.loads(capsys.readouterr().out)["steps"]
    flagged = [s for s in steps if s["path"] == "copy" and s["kind"] == "source"]
    assert flagged and all(s["changed"] and s["recorded_sha256"] == copy["recorded_sha256"]
                           and s["current_sha256"] == copy["current_sha256"] for s in flagged)
    shutil.rmtree(workdir / "copy")
    gone = _step(provenance.explain_cell("results/provenance", "results/tables/d.csv", "x", "value"), "copy")
    assert gone["changed"] and gone["current_sha256"] is None


def test_a_killed_writers_leftovers_are_removed_and_nothing_else(tmp_path):
    from medrepro.data.atomic import remove_temporaries

    target = tmp_path / "model.pt"
    code = ("import os, signal, sys; from medrepro.data.atomic import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n"
            "    tmp.write_bytes(b'half')\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    killed = subprocess.run([sys.executable, "-c", code, str(target)])
    assert killed.returncode == -signal.SIGKILL
    (tmp_path / ".model.pt.d0d0d0d0").mkdir()  # a killed atomic_dir's folder
    # another target's temporaries, even one whose name extends this one's
    keep = [tmp_path / "model.pt.bak", tmp_path / ".other.pt.x1x1x1x1.pt", tmp_path / ".model.pt.gz.abcd1234.pt.gz",
            tmp_path / "model.pt"]
    for path in keep:
        path.write_bytes(b"keep")
    left = [p.name for p in remove_temporaries(target)]
    assert len(left) == 2 and all(name.startswith(".model.pt.") for name in left)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in keep)


def test_a_finished_job_clears_what_killed_attempts_left_beside_its_outputs(tmp_path):
    out = tmp_path / "out" / "table.csv"
    out.parent.mkdir()
    (out.parent / ".table.csv.abc123_x.csv").write_text("half")
    job = Job(rule="r", input=_Namespace(), output=_Namespace(table=str(out)), params=_Namespace(),
              provenance_dir=str(tmp_path / "prov"))
    execute(job, lambda j: Path(j.output.table).write_text("a,b\n"))
    assert sorted(p.name for p in out.parent.iterdir()) == ["table.csv"]
