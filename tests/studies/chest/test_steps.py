"""Pipeline steps: bad input fails naming the file, leaving nothing; report rows trace to their files."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from medrepro.studies.chest.synthetic import generate_dataset
from medrepro.errors import DataError
from medrepro.studies.chest.losses import RegistrationLoss
from medrepro.pipeline.runner import Job, _Namespace, execute
from medrepro.studies.chest import steps as chest

from conftest import REPO


def _job(rule, inputs, outputs, params, wildcards=None, prov=None):
    return Job(rule=rule, input=_Namespace(inputs), output=_Namespace(outputs), params=_Namespace(params),
               wildcards=_Namespace(wildcards or {}), provenance_dir=str(prov))


@pytest.fixture(scope="module")
def montgomery_raw(tmp_path_factory):
    raw = tmp_path_factory.mktemp("raw") / "Montgomery"
    generate_dataset("Montgomery", raw, n_subjects=3, seed=0, image_size=(128, 104))
    return raw


def _convert_job(raw, tmp_path, dataset="Montgomery"):
    return _job("chest_convert", {"raw": [str(raw)]}, {"converted": str(tmp_path / "converted")},
                {"dataset": dataset, "raw_dir": str(raw), "spacing_mm": 0.35}, {"dataset": dataset},
                tmp_path / "prov")


def _assert_nothing_written(tmp_path):
    assert not (tmp_path / "converted").exists()
    assert not any((tmp_path / "prov").rglob("*.json")) if (tmp_path / "prov").exists() else True
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".converted")]
    assert leftovers == []


def test_convert_writes_common_form_and_record(montgomery_raw, tmp_path):
    execute(_convert_job(montgomery_raw, tmp_path), chest.convert)
    assert (tmp_path / "converted" / "subjects.csv").exists()
    assert len(list((tmp_path / "converted" / "labels").glob("*.mha"))) == 3
    assert (tmp_path / "prov" / "jobs" / "chest_convert__dataset=Montgomery.json").exists()


def test_unreadable_png_fails_naming_the_file(montgomery_raw, tmp_path):
    raw = tmp_path / "raw"
    subprocess.run(["cp", "-r", str(montgomery_raw), str(raw)], check=True)
    broken = sorted((raw / "MontgomerySet" / "CXR_png").glob("*.png"))[1]
    broken.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    with pytest.raises(DataError, match=broken.name):
        execute(_convert_job(raw, tmp_path), chest.convert)
    _assert_nothing_written(tmp_path)


def test_mask_size_mismatch_fails_naming_the_file(montgomery_raw, tmp_path):
    from PIL import Image

    raw = tmp_path / "raw"
    subprocess.run(["cp", "-r", str(montgomery_raw), str(raw)], check=True)
    mask = sorted((raw / "MontgomerySet" / "ManualMask" / "leftMask").glob("*.png"))[0]
    Image.fromarray(np.zeros((50, 40), np.uint8)).save(mask)
    with pytest.raises(DataError, match=f"{mask.name}.*mismatch|mismatch.*{mask.name}"):
        execute(_convert_job(raw, tmp_path), chest.convert)
    _assert_nothing_written(tmp_path)


def test_missing_dataset_says_what_to_download(tmp_path):
    job = _job("chest_obtain", {"raw": []}, {"manifest": str(tmp_path / "raw_manifest.sha256")},
               {"dataset": "JSRT", "source": "verify", "raw_dir": str(tmp_path / "nowhere")}, {"dataset": "JSRT"},
               tmp_path / "prov")
    with pytest.raises(DataError) as err:
        execute(job, chest.obtain)
    message = str(err.value)
    assert "nowhere" in message and "jsrt" in message.lower() and ".IMG" in message
    assert not (tmp_path / "raw_manifest.sha256").exists()


def test_checksum_mismatch_fails_naming_the_file(montgomery_raw, tmp_path):
    raw = tmp_path / "raw"
    subprocess.run(["cp", "-r", str(montgomery_raw), str(raw)], check=True)
    png = sorted((raw / "MontgomerySet" / "CXR_png").glob("*.png"))[0]
    png.write_bytes(png.read_bytes() + b"\0")
    job = _job("chest_obtain", {"raw": [str(raw)]}, {"manifest": str(tmp_path / "raw_manifest.sha256")},
               {"dataset": "Montgomery", "source": "synthetic", "raw_dir": str(raw)}, {"dataset": "Montgomery"},
               tmp_path / "prov")
    with pytest.raises(DataError, match=png.name):
        execute(job, chest.obtain)
    assert not (tmp_path / "raw_manifest.sha256").exists()


def test_failed_rule_script_exits_non_zero_with_the_message(tmp_path):
    """The same error through a Snakemake rule: non-zero exit and the message on stderr."""
    config = (REPO / "config/smoke.yaml").read_text().replace("source: synthetic\n      raw_dir: null\n      spacing_mm: null\n      reference: median_area\n      synthetic: {n_subjects: 8}",
                                                             f"source: verify\n      raw_dir: {tmp_path}/missing_jsrt\n      spacing_mm: null\n      reference: median_area\n      synthetic: {{n_subjects: 8}}", 1)
    assert "missing_jsrt" in config
    (tmp_path / "c.yaml").write_text(config)
    result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", str(tmp_path / "c.yaml"),
                             "--config", f"results_dir={tmp_path}/results", "--",
                             f"{tmp_path}/results/chest/JSRT/raw_manifest.sha256"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    log = (tmp_path / "results/logs/chest_obtain/JSRT.log").read_text()
    assert "missing_jsrt" in log and "failed" in log
    assert not (tmp_path / "results/chest/JSRT/raw_manifest.sha256").exists()


def _score_files(tmp_path) -> dict[str, str]:
    """eval CSVs as the evaluation steps write them: two datasets, AC-RegNet with two seeds, two methods run once."""
    import pandas as pd

    rng = np.random.default_rng(0)
    inputs = {}
    for dataset in ("JSRT", "Shenzhen"):
        for method, seeds in (("AC-RegNet", (0, 1)), ("SimpleElastix", (None,)), ("Unregistered", (None,))):
            for seed in seeds:
                rows = [{"dataset": dataset, "method": method, **({} if seed is None else {"seed": seed}),
                         "moving": f"m{i}", "fixed": f"f{i}", "label": label, "dsc": rng.uniform(0.5, 1),
                         "hd": rng.uniform(1, 9), "assd": rng.uniform(0.1, 2), "distance_unit": "mm"}
                        for i in range(6) for label in (1, 2)]
                key = f"{dataset}/{method}" + ("" if seed is None else f"/seed{seed}")
                path = tmp_path / "eval" / f"{key.replace('/', '_')}.csv"
                path.parent.mkdir(exist_ok=True)
                pd.DataFrame(rows).to_csv(path, index=False)
                inputs[key] = str(path)
    return inputs


@pytest.mark.parametrize("step, row, expected", [
    ("registration_table", "JSRT/AC-RegNet", ["JSRT/AC-RegNet/seed0", "JSRT/AC-RegNet/seed1"]),
    ("registration_wilcoxon", "Shenzhen/dsc/AC-RegNet/Unregistered",
     ["Shenzhen/AC-RegNet/seed0", "Shenzhen/AC-RegNet/seed1", "Shenzhen/Unregistered"]),
    ("claims", "chest/JSRT: SimpleElastix > RegNet/hd", None),  # RegNet did not run: no such claim
    ("claims", "chest/Shenzhen: AC-RegNet > SimpleElastix/assd",
     ["Shenzhen/AC-RegNet/seed0", "Shenzhen/AC-RegNet/seed1", "Shenzhen/SimpleElastix"]),
])
def test_report_steps_trace_each_row_to_its_score_files(tmp_path, step, row, expected):
    inputs = _score_files(tmp_path)
    outputs = {"csv": str(tmp_path / "t.csv"), "markdown": str(tmp_path / "t.md"), "latex": str(tmp_path / "t.tex")}
    job = _job(f"chest_{step}", inputs, outputs, {"datasets": ["JSRT", "Shenzhen"],
                                                 "methods": ["AC-RegNet", "SimpleElastix", "Unregistered"]},
               prov=tmp_path / "prov")
    execute(job, getattr(chest, step))
    assert job.cells["rows"].get(row) == (None if expected is None else [inputs[key] for key in expected])
    rows = job.cells["rows"]
    shenzhen_files = {Path(path).name for key in rows if "Shenzhen" in key for path in rows[key]}
    assert shenzhen_files and all(name.startswith("Shenzhen_") for name in shenzhen_files)  # each dataset its own


def test_registration_loss_uses_the_configured_ce_clip():
    warped = torch.zeros(1, 2, 2, 2)
    warped[:, 0] = 1.0  # predicts class 0 everywhere
    target = torch.zeros(1, 2, 2, 2)
    target[:, 1] = 1.0  # truth is class 1 everywhere: -log(clip(0)) = -log(eps)
    image = torch.rand(1, 1, 2, 2)
    for eps in (1e-7, 1e-2):
        loss = RegistrationLoss("CE-RegNet", ce_epsilon=eps)
        _, terms = loss(image, image, torch.zeros(1, 2, 2, 2), warped, target)
        assert float(terms["ce"]) == pytest.approx(-np.log(eps), rel=1e-5)
    with pytest.raises(ValueError, match="ce_epsilon"):
        RegistrationLoss("CE-RegNet", ce_epsilon=0.0)
