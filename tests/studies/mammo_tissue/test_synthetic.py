"""The synthetic DDSM: its native files read back by the study's readers, seeded bytes, findings annotated."""

import hashlib
import shutil

import numpy as np
import pytest

from medrepro.errors import ConfigError, DataError
from medrepro.studies.mammo_tissue.readers import ddsm
from medrepro.studies.mammo_tissue.synthetic import TRUTH_FILE, generate_ddsm

MIX = {"normals": 1, "benigns": 0, "benign_without_callbacks": 0, "cancers": 2}


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddsm") / "raw"
    truth = generate_ddsm(root, n_cases=3, seed=4, pixel_mm=0.5, case_mix=MIX)
    return root, truth


def digest(root) -> str:
    return hashlib.sha256((root / "MANIFEST.sha256").read_bytes()).hexdigest()


def test_every_case_reads_back_in_its_native_layout(stand_in):
    root, truth = stand_in
    folders = ddsm.case_folders(root)
    assert [f.parent.parent.name for f in folders].count("cancers") == 2 and len(folders) == 3
    for folder in folders:
        views = ddsm.read_case(folder)
        assert sorted(v.name for v in views) == list(ddsm.VIEWS)
        for view in views:
            density, abnormalities = ddsm.read_view(view)
            assert density.shape == (view.header.rows, view.header.cols)
            assert 0.05 <= density.min() < 1.0 < 3.0 < density.max() <= 3.6  # tissue and film background
            if view.case_type == "normals":
                assert view.overlay is None and not abnormalities
    cancers = truth[truth["case_type"] == "cancers"]
    assert len(cancers) >= 2 and set(cancers["pathology"]) == {"MALIGNANT"}
    assert set(cancers["assessment"]) <= {0, 4, 5}
    # loose outlines: the drawn region is larger than the finding
    assert (cancers["outline_pixels"] > cancers["lesion_pixels"]).all()


def test_same_seed_same_bytes_whatever_the_workers_other_seed_other_bytes(stand_in, tmp_path):
    root, _ = stand_in
    again = generate_ddsm(tmp_path / "again", n_cases=3, seed=4, pixel_mm=0.5, case_mix=MIX, workers=2)
    assert digest(tmp_path / "again") == digest(root) and (tmp_path / "again" / TRUTH_FILE).is_file()
    generate_ddsm(tmp_path / "other", n_cases=3, seed=5, pixel_mm=0.5, case_mix=MIX)
    assert digest(tmp_path / "other") != digest(root)


def test_bad_arguments_and_a_used_folder_are_refused(tmp_path, stand_in):
    with pytest.raises(ConfigError, match="n_cases"):
        generate_ddsm(tmp_path / "a", n_cases=0, seed=0, pixel_mm=0.5)
    with pytest.raises(ConfigError, match="pixel_mm"):
        generate_ddsm(tmp_path / "b", n_cases=1, seed=0, pixel_mm=5.0)
    with pytest.raises(ConfigError, match="case_mix"):
        generate_ddsm(tmp_path / "c", n_cases=1, seed=0, pixel_mm=0.5, case_mix={"others": 1})
    with pytest.raises(DataError, match="not an empty directory"):
        generate_ddsm(stand_in[0], n_cases=1, seed=0, pixel_mm=0.5)
