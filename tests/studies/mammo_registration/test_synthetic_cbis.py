"""The synthetic CBIS-DDSM: read back end to end through the published-format reader, quirks, truth, determinism."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from medrepro.errors import ConfigError, DataError
from medrepro.provenance.pinning import MANIFEST_FILE, verify
from medrepro.shared.dicom import read_header, read_mammogram
from medrepro.studies.mammo_registration.readers.cbis_ddsm import (
    CASE_DESCRIPTION_FILES, case_description_paths, clean_path, pair_views, read_case_descriptions, resolve_files,
    with_lesion_boxes)
from medrepro.studies.mammo_registration.synthetic import TRUTH_COLUMNS, TRUTH_FILE, generate_cbis_ddsm

N_PATIENTS, SEED, SIZE = 4, 3, (400, 240)


@pytest.fixture(scope="module", params=["nbia", "legacy"])
def generated(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"cbis_{request.param}") / "raw"
    truth = generate_cbis_ddsm(root, N_PATIENTS, SEED, image_size=SIZE, layout=request.param)
    resolved = resolve_files(read_case_descriptions(case_description_paths(root)), root)
    return request.param, root, truth, resolved


def test_layout_on_disk(generated):
    layout, root, _, resolved = generated
    files = [Path(f).relative_to(root) for f in resolved["image_file"]]
    if layout == "nbia":
        assert all(f.parts[0] == "CBIS-DDSM" and f.parts[3].startswith("1.000000-full mammogram images-")
                   and f.name == "1-1.dcm" for f in files)
    else:
        assert all(len(f.parts) == 4 and f.parts[2] == read_header(root / f)["series_uid"] for f in files)
    assert {p.name for p in root.iterdir() if p.is_file()} == {*CASE_DESCRIPTION_FILES.values(), TRUTH_FILE,
                                                               MANIFEST_FILE}


def test_reads_back_end_to_end_and_boxes_hold_the_true_centres(generated):
    _, _, truth, resolved = generated
    pairs = pair_views(with_lesion_boxes(resolved)).pairs
    assert pairs["split"].nunique() == 2 and len(truth) >= N_PATIENTS
    assert len(pairs) == len(truth)  # every annotated lesion pairs with itself, and nothing else pairs
    assert list(truth.columns) == TRUTH_COLUMNS
    merged = pairs.merge(truth, left_on=["patient_id", "side", "cc_abnormality_id", "split"],
                         right_on=["patient_id", "side", "abnormality_id", "split"], validate="one_to_one")
    assert len(merged) == len(truth)
    for view in ("cc", "mlo"):
        x, y = merged[f"{view}_centre_x"], merged[f"{view}_centre_y"]
        assert ((merged[f"{view}_box_x1"] <= x) & (x <= merged[f"{view}_box_x2"])).all()
        assert ((merged[f"{view}_box_y1"] <= y) & (y <= merged[f"{view}_box_y2"])).all()
    assert (merged["cc_image_rows"] == SIZE[0]).all() and (merged["mlo_image_columns"] == SIZE[1]).all()
    # the truth's 3-D centres lie in front of the chest wall and the MLO angle is the oblique one
    assert (truth["centre_x_mm"] > 0).all() and truth["mlo_angle_deg"].between(45, 50).all()


def test_kinds_carry_their_own_descriptors(generated):
    _, root, _, _ = generated
    for (kind, _), name in CASE_DESCRIPTION_FILES.items():
        table = pd.read_csv(root / name, dtype=str)
        columns = ("mass shape", "mass margins") if kind == "mass" else ("calc type", "calc distribution")
        density = "breast_density" if kind == "mass" else "breast density"
        assert set(columns) <= set(table.columns) and density in table.columns
        assert table[list(columns)].notna().all().all()
        assert table[density].astype(int).between(1, 4).all()


def test_the_newline_and_swap_quirks_are_in_the_tables(generated):
    _, root, _, resolved = generated
    fields = [field for name in CASE_DESCRIPTION_FILES.values()
              for record in csv.reader((root / name).open(newline="", encoding="utf-8")) for field in record]
    assert any(field.endswith("\n") and field.strip().endswith(".dcm") for field in fields)
    # the series UID a table names as the ROI mask is the crop's for a swapped row
    named = resolved["roi_mask_path"].map(lambda p: clean_path(p).split("/")[2])
    mask_series = resolved["roi_mask_file"].map(lambda f: read_header(f)["series_uid"])
    crop_series = resolved["crop_file"].map(lambda f: read_header(f)["series_uid"])
    swapped = named == crop_series
    assert ((named == mask_series) | swapped).all()
    assert 1 <= swapped.sum() < len(resolved)


def test_masks_are_full_size_binary_and_crops_are_smaller_cut_outs(generated):
    _, _, _, resolved = generated
    row = resolved.iloc[0]
    mask, _ = read_mammogram(row["roi_mask_file"])
    assert mask.shape == SIZE and set(np.unique(mask)) == {0, 255}
    crop, _ = read_mammogram(row["crop_file"])
    assert crop.shape[0] < SIZE[0] and crop.shape[1] < SIZE[1]


def _find(image: np.ndarray, patch: np.ndarray) -> tuple[int, int] | None:
    """Top-left of an exact copy of ``patch`` in ``image`` (brute force)."""
    rows, cols = patch.shape
    for r in range(image.shape[0] - rows + 1):
        for c in np.flatnonzero(image[r, : image.shape[1] - cols + 1] == patch[0, 0]):
            if np.array_equal(image[r:r + rows, c:c + cols], patch):
                return r, int(c)
    return None


def test_monochrome1_files_read_back_with_the_crop_inside(generated):
    _, _, _, resolved = generated
    photometric = resolved["image_file"].map(
        lambda f: pydicom.dcmread(f, stop_before_pixels=True).PhotometricInterpretation)
    assert set(photometric) <= {"MONOCHROME1", "MONOCHROME2"} and (photometric == "MONOCHROME1").any()
    row = resolved[photometric == "MONOCHROME1"].iloc[0]
    image, _ = read_mammogram(row["image_file"])
    crop, _ = read_mammogram(row["crop_file"])  # stored MONOCHROME2, cut from the same film
    mask, _ = read_mammogram(row["roi_mask_file"])
    found = _find(image, crop)
    assert found is not None
    rows, cols = np.nonzero(mask)
    r, c = found
    assert r <= rows.min() and rows.max() < r + crop.shape[0] and c <= cols.min() and cols.max() < c + crop.shape[1]


def test_the_manifest_verifies(generated):
    _, root, _, _ = generated
    files = [p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST_FILE]
    assert verify(root, root / MANIFEST_FILE, thorough=True) == len(files)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    for name, seed in (("a", 11), ("b", 11), ("c", 12)):
        generate_cbis_ddsm(tmp_path / name, 2, seed, image_size=(200, 120), layout="legacy")
    manifests = [(tmp_path / name / MANIFEST_FILE).read_bytes() for name in "abc"]
    assert manifests[0] == manifests[1] != manifests[2]


def test_bad_arguments_and_a_non_empty_target(tmp_path):
    with pytest.raises(ConfigError, match="layout"):
        generate_cbis_ddsm(tmp_path / "x", 2, 0, layout="flat")
    with pytest.raises(ConfigError, match="n_patients"):
        generate_cbis_ddsm(tmp_path / "x", 0, 0)
    with pytest.raises(ConfigError, match="test_fraction"):
        generate_cbis_ddsm(tmp_path / "x", 2, 0, test_fraction=1.0)
    with pytest.raises(ConfigError, match="image_size"):
        generate_cbis_ddsm(tmp_path / "x", 2, 0, image_size=(32, 32))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "user.dcm").write_bytes(b"x")
    with pytest.raises(DataError, match="not an empty directory"):
        generate_cbis_ddsm(tmp_path / "full", 2, 0)
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["user.dcm"]
