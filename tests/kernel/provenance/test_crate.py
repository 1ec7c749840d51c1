"""Workflow Run RO-Crate export: a hand-built run (raw files -> scores -> table) and the default run."""

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from rocrate.rocrate import ROCrate

from medrepro.provenance import crate as crate_module
from medrepro.provenance import records as provenance
from medrepro.pipeline.cli import main as cli_main
from medrepro.provenance.crate import export_crate

from support.crate_trace import as_list, trace

from conftest import REPO
PROFILES = {"https://w3id.org/ro/wfrun/process/0.5", "https://w3id.org/ro/wfrun/workflow/0.5",
            "https://w3id.org/ro/wfrun/provenance/0.5", "https://w3id.org/workflowhub/workflow-ro-crate/1.0"}


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _record(rule, wildcards, inputs, outputs, params, cells=None):
    started = provenance.now()
    record = provenance.build_record(rule=rule, wildcards=wildcards, inputs=inputs, outputs=outputs, params=params,
                                     threads=1, resources={"tmpdir": "/tmp"}, started=started,
                                     finished=provenance.now(), log=[], cells=cells)
    provenance.write_record("results/provenance", record)
    return record


@pytest.fixture
def run(tmp_path, monkeypatch):
    """raw/a.txt, raw/b.txt and raw/images/ -> results/scores/{a,b}.csv -> results/tables/t.csv."""
    monkeypatch.chdir(tmp_path)
    for var in list(os.environ):
        if var.startswith("SLURM") or var == "CUDA_VISIBLE_DEVICES":
            monkeypatch.delenv(var)
    (tmp_path / "Snakefile").write_text("rule all:\n    input: 'results/tables/t.csv'\n")
    (tmp_path / "raw" / "images").mkdir(parents=True)
    (tmp_path / "raw" / "a.txt").write_text("raw data A\n")
    (tmp_path / "raw" / "b.txt").write_text("raw data B, longer\n")
    for i in range(3):
        (tmp_path / "raw" / "images" / f"{i}.img").write_bytes(bytes([i]) * 10)
    os.makedirs("results/scores")
    os.makedirs("results/tables")
    records = {}
    for name in ("a", "b"):
        if name == "a":
            monkeypatch.setenv("SLURM_JOB_ID", "4242")
            monkeypatch.setenv("SLURMD_NODENAME", "node07")
        else:
            monkeypatch.delenv("SLURM_JOB_ID")
            monkeypatch.delenv("SLURMD_NODENAME")
        value = len(Path(f"raw/{name}.txt").read_text()) * 2
        pd.DataFrame({"value": [value], "n_images": [3]}).to_csv(f"results/scores/{name}.csv", index=False)
        records[name] = _record("score", {"name": name}, [f"raw/{name}.txt", "raw/images"],
                                [f"results/scores/{name}.csv"], {"seed": 7, "factor": 2, "name": name})
    rows = [{"name": n, "value": pd.read_csv(f"results/scores/{n}.csv")["value"][0], "note": "ok"} for n in "ab"]
    pd.DataFrame(rows).to_csv("results/tables/t.csv", index=False)
    Path("results/tables/t.md").write_text("| name | value |\n")
    records["table"] = _record("table", {}, ["results/scores/a.csv", "results/scores/b.csv"],
                               ["results/tables/t.csv", "results/tables/t.md"], {"digits": 3},
                               cells={"key_columns": ["name"],
                                      "rows": {"a": ["results/scores/a.csv"], "b": ["results/scores/b.csv"]}})
    return tmp_path, records


def _export(root: Path) -> tuple[Path, ROCrate]:
    out = export_crate(root / "results" / "provenance", root / "results" / "provenance.crate.zip")
    return out, ROCrate(out)


def test_crate_conforms_to_the_workflow_run_profiles(run):
    root, records = run
    _, crate = _export(root)
    assert PROFILES <= {p.id for p in as_list(crate.root_dataset["conformsTo"])}
    assert "https://w3id.org/ro/crate/1.1" in {p["@id"] for p in as_list(crate.metadata._jsonld["conformsTo"])}
    workflow = crate.mainEntity
    assert workflow.id == "Snakefile"
    assert {"File", "SoftwareSourceCode", "ComputationalWorkflow", "HowTo"} <= set(workflow.type)
    assert workflow["programmingLanguage"].id.endswith("#snakemake")
    assert workflow["version"] == records["table"]["code"]["git_commit"]
    assert workflow["sha256"] == _sha(root / "Snakefile")
    assert {s.id for s in as_list(workflow["step"])} == {"#step/score", "#step/table"}


def test_one_create_action_per_job_and_one_for_the_run(run):
    root, records = run
    _, crate = _export(root)
    actions = {a.id: a for a in crate.get_by_type("CreateAction")}
    assert set(actions) == {"#run", "#job/score/name=a", "#job/score/name=b", "#job/table"}
    assert actions["#run"]["instrument"] is crate.mainEntity
    assert {e["localPath"] for e in as_list(actions["#run"]["object"])} == {"raw/a.txt", "raw/b.txt", "raw/images/"}
    assert {e.id for e in as_list(actions["#run"]["result"])} >= {"results/tables/t.csv"}

    job = actions["#job/score/name=a"]
    rec = records["a"]
    assert job["name"] == "score[name=a]"
    assert (job["startTime"], job["endTime"]) == (rec["started"], rec["finished"])
    tool = job["instrument"]
    assert "SoftwareApplication" in as_list(tool.type) and tool["version"] == rec["code"]["git_commit"]
    versions = {s["name"]: s["softwareVersion"] for s in as_list(tool["softwareRequirements"])}
    assert versions["numpy"] == rec["packages"]["numpy"] and versions["python"] == rec["packages"]["python"]
    params = {o["name"]: o["value"] for o in as_list(job["object"]) if o.type == "PropertyValue"}
    assert params == {"seed": 7, "factor": 2, "name": "a"}
    env = {p["name"]: p["value"] for p in as_list(job["environment"])}
    assert env == {"SLURM_JOB_ID": "4242", "SLURMD_NODENAME": "node07"}
    extra = {p["name"]: p["value"] for p in as_list(job["additionalProperty"])}
    assert extra["hostname"] == rec["host"]["hostname"] and extra["threads"] == 1
    assert "environment" not in actions["#job/score/name=b"]
    controls = crate.get_by_type("ControlAction")
    assert len(controls) == 3 and {c["object"].id for c in controls} == set(actions) - {"#run"}
    organize = crate.get_by_type("OrganizeAction")[0]
    assert organize["result"] is actions["#run"]


def test_files_carry_sha256_and_only_the_tables_are_copied(run):
    root, _ = run
    out, crate = _export(root)
    files = crate.get_by_type("File")
    assert files and all(f.get("sha256") and f.get("contentSize") for f in files)
    for f in files:
        if f.get("localPath"):
            assert f["sha256"] == _sha(root / f["localPath"])
            assert int(f["contentSize"]) == (root / f["localPath"]).stat().st_size
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        assert names == {"ro-crate-metadata.json", "Snakefile", "README.md", "results/tables/t.csv"}
        assert zf.read("results/tables/t.csv") == (root / "results/tables/t.csv").read_bytes()
    assert crate.get("results/tables/t.csv")["sha256"] == _sha(root / "results/tables/t.csv")
    assert crate.get("#results/tables/t.md")["localPath"] == "results/tables/t.md"
    images = crate.get("#raw/images/")
    assert "Dataset" in as_list(images.type)
    assert images["sha256"] == provenance.describe_path(root / "raw/images")["sha256"]
    assert sorted(p["localPath"] for p in as_list(images["hasPart"])) == [f"raw/images/{i}.img" for i in range(3)]
    assert all(p["isPartOf"] is images for p in as_list(images["hasPart"]))


def test_large_directories_are_described_without_their_files(run, monkeypatch):
    root, _ = run
    monkeypatch.setattr(crate_module, "MAX_LISTED_FILES", 2)
    _, crate = _export(root)
    images = crate.get("#raw/images/")
    assert "hasPart" not in images and crate.get("#raw/images/0.img") is None
    assert images["additionalProperty"]["value"] == 3
    assert images["sha256"] == provenance.describe_path(root / "raw/images")["sha256"]


def test_a_table_number_traces_back_to_its_raw_file(run):
    root, _ = run
    _, crate = _export(root)
    number = crate.get("#t.csv/a/value")
    table = pd.read_csv(root / "results/tables/t.csv")
    assert number.type == "PropertyValue" and number["propertyID"] == "value"
    assert number["value"] == table.loc[table["name"] == "a", "value"].item()
    assert number["name"] == "value of a"
    assert number["isPartOf"] is crate.get("results/tables/t.csv")
    assert crate.get("#t.csv/a/note") is None            # text, not a number
    assert crate.get("#t.csv/b/value") is not None

    writer = [a for a in crate.get_by_type("CreateAction") if number in as_list(a.get("result"))]
    assert [a.id for a in writer] == ["#job/table"]
    based_on = as_list(number["isBasedOn"])
    assert [e["localPath"] for e in based_on] == ["results/scores/a.csv"]   # row a only, not b's scores

    visited, actions, sources = trace(crate, based_on)
    assert [a.id for a in actions] == ["#job/score/name=a"]
    raw = {s["localPath"]: s for s in sources}
    assert set(raw) == {"raw/a.txt", "raw/images/"}                         # raw/b.txt fed only row b
    assert raw["raw/a.txt"]["sha256"] == hashlib.sha256(b"raw data A\n").hexdigest()
    assert "#raw/b.txt" not in visited and "#results/scores/b.csv" not in visited


def test_failed_export_leaves_no_zip(run, monkeypatch):
    root, _ = run
    target = root / "results" / "provenance.crate.zip"

    def broken(self, out_path):
        Path(out_path).write_bytes(b"PK partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(ROCrate, "write_zip", broken)
    with pytest.raises(RuntimeError):
        export_crate(root / "results" / "provenance", target)
    assert not target.exists()
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".provenance.crate.zip")]

    target.write_bytes(b"previous crate")
    with pytest.raises(RuntimeError):
        export_crate(root / "results" / "provenance", target)
    assert target.read_bytes() == b"previous crate"


def test_cli_exports_and_keeps_table_mode(run, capsys):
    root, _ = run
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    out = subprocess.run([sys.executable, "-m", "medrepro.pipeline.cli", "provenance", "--export", "crate.zip",
                          "--results", "results"], cwd=root, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "crate.zip" in out.stdout
    crate = ROCrate(root / "crate.zip")
    assert crate.get("#t.csv/b/value") is not None

    with pytest.raises(SystemExit) as exc:
        cli_main(["provenance"])
    assert exc.value.code == 2
    assert "required unless --export" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["provenance", "results/tables/t.csv", "--export", "x.zip"])
    assert not (root / "x.zip").exists()
    assert cli_main(["provenance", "results/tables/t.csv", "--row", "a", "--column", "value", "--brief"]) == 0
    assert "raw/a.txt" in capsys.readouterr().out


@pytest.mark.skipif(not (REPO / "results" / "provenance" / "jobs").is_dir(), reason="no default run in results/")
def test_default_run_number_traces_back_to_the_jsrt_raw_files(tmp_path):
    out = export_crate(REPO / "results" / "provenance", tmp_path / "provenance.crate.zip",
                       results_dir=REPO / "results")
    crate = ROCrate(out)
    jobs = len(list((REPO / "results" / "provenance" / "jobs").glob("*.json")))
    assert len(crate.get_by_type("CreateAction")) == jobs + 1

    number = crate.get("#chest_registration.csv/JSRT/AC-RegNet/dsc_mean")
    table = pd.read_csv(REPO / "results/tables/chest_registration.csv")
    row = table[(table["dataset"] == "JSRT") & (table["method"] == "AC-RegNet")]
    assert number["value"] == pytest.approx(row["dsc_mean"].item(), abs=0)
    assert number["isPartOf"]["sha256"] == _sha(REPO / "results/tables/chest_registration.csv")

    visited, actions, _ = trace(crate, as_list(number["isBasedOn"]))
    rules = {a["name"].split("[")[0] for a in actions}
    assert {"chest_evaluate_learned", "chest_train_registration", "chest_convert", "chest_synthesize"} <= rules
    assert all("Montgomery" not in a.id and "Shenzhen" not in a.id for a in actions)
    raw = crate.get("#results/raw/JSRT/")
    assert raw.id in visited
    assert raw["sha256"] == provenance.describe_path(REPO / "results/raw/JSRT")["sha256"]
    parts = as_list(raw["hasPart"])
    assert len(parts) == json.loads((REPO / "results/provenance/jobs/chest_synthesize__dataset=JSRT.json")
                                    .read_text())["outputs"][0]["n_files"]
    for part in parts:
        assert part["localPath"].startswith("results/raw/JSRT/")
        assert part["sha256"] == _sha(REPO / part["localPath"])
