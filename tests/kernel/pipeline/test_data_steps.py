"""The data steps every study shares, on a study-free toy dataset: stand-in, download, obtain, a user's copy."""

from pathlib import Path

import pytest

from medrepro.data import sourcing
from medrepro.errors import DataError
from medrepro.provenance.pinning import MANIFEST_FILE, write_manifest
from medrepro.pipeline.runner import Job, _Namespace
from medrepro.pipeline.steps import download_step, obtain_step, record_user_copy, recorded_extras, synthesize_step


def check_layout(raw_root: Path) -> dict:
    if not (raw_root / "a.txt").is_file():
        raise DataError(raw_root, "no a.txt. " + sourcing.instructions(TOY, raw_root))
    return {"files": 1}


def write_toy(raw_root: Path) -> Path:
    raw_root.mkdir(parents=True, exist_ok=True)
    (raw_root / "a.txt").write_text("toy")
    write_manifest(raw_root, raw_root / MANIFEST_FILE)
    return raw_root


PART = sourcing.Source(what="toy files", urls=("https://example.org/toy",), access="public", automatic=True,
                       put_under=".", expect="a.txt")
TOY = sourcing.register(sourcing.Dataset("toy-steps-test", (PART,), check_layout, write_toy))


def job(tmp_path: Path, inputs: dict | None = None, params: dict | None = None, **outputs) -> Job:
    return Job(rule="toy", input=_Namespace(inputs or {}), output=_Namespace(outputs), params=_Namespace(params or {}),
               provenance_dir=str(tmp_path / "provenance"))


def test_synthesize_step_publishes_what_the_generator_wrote_and_returns_its_answer(tmp_path):
    out = tmp_path / "raw" / "toy"
    written_into = synthesize_step(job(tmp_path, _0=str(out)), write_toy)
    assert written_into.parent == out.parent and written_into != out  # a temporary sibling, renamed when complete
    assert (out / "a.txt").read_text() == "toy" and (out / MANIFEST_FILE).is_file()

    def fail(directory: Path):
        (directory / "half.txt").write_text("half")
        raise DataError(directory, "generator failed")

    with pytest.raises(DataError, match="generator failed"):
        synthesize_step(job(tmp_path, _0=str(tmp_path / "raw" / "other")), fail)
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["toy"]  # nothing half-written left


def test_download_step_uses_the_datasets_download_function(tmp_path):
    download_step(job(tmp_path, _0=str(tmp_path / "downloaded")), "toy-steps-test")
    assert (tmp_path / "downloaded" / "a.txt").read_text() == "toy"


def test_obtain_step_verifies_a_stand_in_and_records_a_users_copy_as_read(tmp_path):
    raw = write_toy(tmp_path / "made")
    made = job(tmp_path, {"raw": [str(raw)]}, {"source": "synthetic", "raw_dir": str(raw)},
               manifest=str(tmp_path / "m1.sha256"))
    assert obtain_step(made, TOY)["files"] == 1 and made.extra_inputs == []  # a rule's output is an input already
    copy = tmp_path / "users_copy"
    copy.mkdir()
    (copy / "a.txt").write_text("real")
    placed = job(tmp_path, {"raw": []}, {"source": "verify", "raw_dir": str(copy)},
                 manifest=str(tmp_path / "m2.sha256"))
    assert "first use: pinned 1 files" in obtain_step(placed, "toy-steps-test")["message"]
    assert placed.extra_inputs == [str(copy)] and (tmp_path / "m2.sha256").is_file()
    assert (tmp_path / "provenance" / "pins" / "toy-steps-test.sha256").is_file()


def test_record_user_copy_adds_the_directory_once(tmp_path):
    j = job(tmp_path, {"raw": [str(tmp_path / "made")]})
    record_user_copy(j, tmp_path / "made")
    record_user_copy(j, tmp_path / "copy")
    record_user_copy(j, str(tmp_path / "copy"))
    assert j.extra_inputs == [str(tmp_path / "copy")]


def test_recorded_extras_reads_the_writers_records_and_makes_them_inputs(tmp_path):
    from medrepro.provenance.records import build_record, write_record

    made = tmp_path / "made.csv"
    made.write_text("x\n1\n")
    record = build_record(rule="writer", wildcards={"seed": "0"}, inputs=[], outputs=[str(made)], params={},
                          threads=1, resources={}, started="t0", finished="t1", log=[],
                          extra={"runtimes": {"a": 1.5}})
    record_file = write_record(tmp_path / "provenance", record)
    j = job(tmp_path)
    assert recorded_extras(j, [str(made)], "runtimes") == {str(made): {"a": 1.5}}
    assert recorded_extras(j, [str(made)], "absent") == {str(made): None}
    assert j.extra_inputs == [str(record_file)] * 2
    with pytest.raises(DataError, match="orphan.csv: no provenance record of the job that wrote it"):
        recorded_extras(job(tmp_path), [str(tmp_path / "orphan.csv")], "runtimes")
