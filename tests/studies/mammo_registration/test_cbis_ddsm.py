"""CBIS-DDSM read as published: case tables with their quirks, both folder layouts, lesion boxes, CC/MLO pairs."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medrepro.errors import ConfigError, DataError
from medrepro.shared.dicom import CROPPED, FULL_MAMMOGRAM, ROI_MASK, deterministic_uid, write_mammogram
from medrepro.studies.mammo_registration.readers.cbis_ddsm import (
    CASE_DESCRIPTION_FILES, TABLE_COLUMNS, case_description_paths, clean_path, dicom_path_for, lesion_box, mask_box,
    pair_views, parse_subject, published_header, read_case_description, read_case_descriptions, resolve_files,
    subject_id, with_lesion_boxes, write_case_descriptions)

# The published headers, typed from the format notes (not from the module under test).
MASS_HEADER = ("patient_id,breast_density,left or right breast,image view,abnormality id,abnormality type,"
               "mass shape,mass margins,assessment,pathology,subtlety,image file path,cropped image file path,"
               "ROI mask file path")
CALC_HEADER = ("patient_id,breast density,left or right breast,image view,abnormality id,abnormality type,"
               "calc type,calc distribution,assessment,pathology,subtlety,image file path,cropped image file path,"
               "ROI mask file path")
IMAGE_SHAPE = (40, 30)  # rows, columns


@dataclass
class Lesion:
    kind: str
    split: str
    patient: str
    side: str
    view: str
    abnormality_id: int
    pathology: str
    box: tuple[int, int, int, int]  # x1, y1, x2, y2, half-open


LESIONS = [
    Lesion("mass", "Training", "P_00001", "LEFT", "CC", 1, "MALIGNANT", (5, 10, 13, 20)),
    Lesion("mass", "Training", "P_00001", "LEFT", "MLO", 1, "MALIGNANT", (8, 4, 20, 9)),
    Lesion("mass", "Training", "P_00002", "RIGHT", "CC", 1, "BENIGN", (0, 0, 4, 3)),  # no MLO: unpaired
    Lesion("calc", "Training", "P_00003", "LEFT", "CC", 1, "BENIGN", (2, 30, 6, 40)),
    Lesion("calc", "Training", "P_00003", "LEFT", "MLO", 1, "BENIGN", (25, 1, 30, 2)),
    Lesion("calc", "Training", "P_00003", "LEFT", "CC", 2, "BENIGN", (10, 10, 11, 11)),  # partner differs
    Lesion("calc", "Training", "P_00003", "LEFT", "MLO", 2, "MALIGNANT", (12, 12, 14, 14)),
    Lesion("mass", "Test", "P_00010", "RIGHT", "CC", 1, "BENIGN_WITHOUT_CALLBACK", (3, 3, 9, 9)),
    Lesion("mass", "Test", "P_00010", "RIGHT", "MLO", 1, "BENIGN_WITHOUT_CALLBACK", (4, 5, 6, 7)),
]


def uids(subject: str, series: str) -> dict:
    return {"study_uid": deterministic_uid(subject, "study"), "series_uid": deterministic_uid(subject, series)}


def write_series(root: Path, layout: str, subject: str, series: str, pixels: np.ndarray) -> str:
    """Write one DICOM in ``layout``; its path as the case tables give it."""
    ids = uids(subject, series)
    write_mammogram(root / dicom_path_for(layout, subject, series, **ids), pixels, PatientID=subject,
                    SeriesDescription=series, uid_key=f"{subject}/{series}")
    return dicom_path_for("csv", subject, series, **ids, instance=2 if series == ROI_MASK else 1)


def mask_for(box, shape=IMAGE_SHAPE) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    x1, y1, x2, y2 = box
    mask[y1:y2, x1:x2] = 255
    return mask


def build(root: Path, layout: str, lesions=LESIONS, swap=(), tables: Path | None = None) -> Path:
    """A miniature CBIS-DDSM: DICOMs in ``layout`` under ``root``, the case tables in ``tables``.

    ``swap`` holds indices of lesions whose crop and ROI-mask columns are exchanged in the table.
    """
    tables = tables or root / "tables"
    rng = np.random.default_rng(0)
    written, rows = set(), {key: [] for key in CASE_DESCRIPTION_FILES}
    for index, lesion in enumerate(lesions):
        full = subject_id(lesion.kind, lesion.split, lesion.patient, lesion.side, lesion.view)
        image = rng.integers(0, 65535, IMAGE_SHAPE, dtype=np.uint16)
        image_path = write_series(root, layout, full, FULL_MAMMOGRAM, image) if full not in written else None
        written.add(full)
        image_path = image_path or dicom_path_for("csv", full, FULL_MAMMOGRAM, **uids(full, FULL_MAMMOGRAM))
        lesion_subject = f"{full}_{lesion.abnormality_id}"
        x1, y1, x2, y2 = lesion.box
        roi = write_series(root, layout, lesion_subject, ROI_MASK, mask_for(lesion.box))
        crop = write_series(root, layout, lesion_subject, CROPPED, image[y1:y2, x1:x2].copy())
        if index in swap:
            roi, crop = crop, roi
        rows[(lesion.kind, lesion.split)].append(dict(
            patient_id=lesion.patient, side=lesion.side, view=lesion.view, abnormality_id=lesion.abnormality_id,
            abnormality_type="mass" if lesion.kind == "mass" else "calcification", pathology=lesion.pathology,
            assessment=4, subtlety=3, breast_density=2, image_path=image_path, crop_path=crop, roi_mask_path=roi,
            mass_shape="OVAL", mass_margins="CIRCUMSCRIBED", calc_type="AMORPHOUS", calc_distribution="CLUSTERED"))
    for (kind, split), kind_rows in rows.items():
        write_case_descriptions(kind_rows, tables / CASE_DESCRIPTION_FILES[(kind, split)], kind)
    return tables


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "cbis"
    tables = build(root, "nbia")
    return root, tables


# ---------------------------------------------------------------- names and paths


def test_subject_ids_and_layout_paths_by_hand():
    assert subject_id("mass", "Training", "P_00001", "LEFT", "CC") == "Mass-Training_P_00001_LEFT_CC"
    assert subject_id("calc", "Test", "P_00042", "RIGHT", "MLO", 3) == "Calc-Test_P_00042_RIGHT_MLO_3"
    parsed = parse_subject("Calc-Test_P_00042_RIGHT_MLO_3")
    assert (parsed.kind, parsed.split, parsed.patient_id, parsed.side, parsed.view, parsed.abnormality_id) == (
        "calc", "Test", "P_00042", "RIGHT", "MLO", 3)
    assert parse_subject("Mass-Training_P_00001_LEFT") is None
    ids = dict(study_uid="1.2.3.4567890", series_uid="1.2.3.12")
    subject = "Mass-Training_P_00001_LEFT_CC"
    assert dicom_path_for("nbia", subject, FULL_MAMMOGRAM, **ids) == (
        "CBIS-DDSM/Mass-Training_P_00001_LEFT_CC/07-20-2016-DDSM-67890/1.000000-full mammogram images-12312/1-1.dcm")
    assert dicom_path_for("legacy", subject, FULL_MAMMOGRAM, **ids) == (
        "Mass-Training_P_00001_LEFT_CC/1.2.3.4567890/1.2.3.12/1-1.dcm")
    assert dicom_path_for("csv", subject, ROI_MASK, **ids, instance=2) == (
        "Mass-Training_P_00001_LEFT_CC/1.2.3.4567890/1.2.3.12/000001.dcm")
    with pytest.raises(ValueError, match="layout"):
        dicom_path_for("flat", subject, FULL_MAMMOGRAM, **ids)
    assert clean_path(' "Calc-Test_P_00042_RIGHT_MLO_3/1.2/3.4/000001.dcm\n" ') == (
        "Calc-Test_P_00042_RIGHT_MLO_3/1.2/3.4/000001.dcm")


def test_published_headers():
    assert ",".join(published_header("mass")) == MASS_HEADER
    assert ",".join(published_header("calc")) == CALC_HEADER
    assert [p.name for p in case_description_paths("x")] == [
        "mass_case_description_train_set.csv", "mass_case_description_test_set.csv",
        "calc_case_description_train_set.csv", "calc_case_description_test_set.csv"]


# ---------------------------------------------------------------- case tables


def test_a_literal_published_calc_table_with_an_embedded_newline(tmp_path):
    """Text as published (typed here, not written by the module): quoted paths ending in a newline."""
    path = tmp_path / "calc_case_description_test_set.csv"
    path.write_text(
        CALC_HEADER + "\n"
        "P_00038,2,LEFT,CC,1,calcification,PUNCTATE-PLEOMORPHIC,CLUSTERED,4,BENIGN,2,"
        "Calc-Test_P_00038_LEFT_CC/1.3.6.1.4.1.9590.100.1.2.1/1.3.6.1.4.1.9590.100.1.2.2/000000.dcm,"
        "Calc-Test_P_00038_LEFT_CC_1/1.3.6.1.4.1.9590.100.1.2.3/1.3.6.1.4.1.9590.100.1.2.4/000000.dcm,"
        "\"Calc-Test_P_00038_LEFT_CC_1/1.3.6.1.4.1.9590.100.1.2.3/1.3.6.1.4.1.9590.100.1.2.4/000001.dcm\n\"\n"
        "P_00038,2,LEFT,MLO,1,calcification,PUNCTATE-PLEOMORPHIC,CLUSTERED,4,MALIGNANT,5,"
        "Calc-Test_P_00038_LEFT_MLO/1.9/1.8/000000.dcm,\"Calc-Test_P_00038_LEFT_MLO_1/1.7/1.6/000000.dcm\n\","
        "\"Calc-Test_P_00038_LEFT_MLO_1/1.7/1.6/000001.dcm\n\"\n")
    table = read_case_description(path)
    assert list(table.columns) == TABLE_COLUMNS and len(table) == 2
    first = table.iloc[0]
    assert first["roi_mask_path"] == (
        "Calc-Test_P_00038_LEFT_CC_1/1.3.6.1.4.1.9590.100.1.2.3/1.3.6.1.4.1.9590.100.1.2.4/000001.dcm")
    assert (first["patient_id"], first["side"], first["view"], first["split"]) == ("P_00038", "LEFT", "CC", "Test")
    assert (first["abnormality_type"], first["breast_density"], first["pathology"]) == ("calcification", 2, "BENIGN")
    assert table.iloc[1]["crop_path"] == "Calc-Test_P_00038_LEFT_MLO_1/1.7/1.6/000000.dcm"
    assert list(table["row"]) == [1, 2]


def test_written_tables_carry_the_published_header_and_quirks(dataset):
    _, tables = dataset
    mass = (tables / "mass_case_description_train_set.csv").read_text()
    calc = (tables / "calc_case_description_train_set.csv").read_text()
    assert mass.splitlines()[0] == MASS_HEADER and calc.splitlines()[0] == CALC_HEADER
    assert '/000001.dcm\n"' in mass  # the ROI mask path: quoted, with its embedded newline
    assert len(mass.splitlines()) > 1 + 3  # embedded newlines make more lines than records


def test_both_header_variants_read_into_one_table(dataset):
    _, tables = dataset
    table = read_case_descriptions(case_description_paths(tables))
    assert len(table) == len(LESIONS)
    assert set(table["abnormality_type"]) == {"mass", "calcification"}
    assert set(table["split"]) == {"Training", "Test"}
    assert (table["breast_density"] == 2).all()  # read from 'breast_density' and 'breast density' alike
    assert not table["roi_mask_path"].str.contains("\n").any()
    first = table.iloc[0]
    assert (first["patient_id"], first["side"], first["view"], first["abnormality_id"]) == ("P_00001", "LEFT", "CC", 1)


def test_write_then_read_round_trip_and_same_bytes(tmp_path):
    row = dict(patient_id="P_00007", side="RIGHT", view="MLO", abnormality_id=2, abnormality_type="mass",
               pathology="MALIGNANT", assessment=5, subtlety=4, breast_density=3,
               image_path="Mass-Test_P_00007_RIGHT_MLO/1.1/1.2/000000.dcm",
               crop_path="Mass-Test_P_00007_RIGHT_MLO_2/1.3/1.4/000000.dcm",
               roi_mask_path="Mass-Test_P_00007_RIGHT_MLO_2/1.3/1.4/000001.dcm")
    write_case_descriptions([row], tmp_path / "a.csv", "mass")
    write_case_descriptions([row], tmp_path / "b.csv", "mass")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    read = read_case_description(tmp_path / "a.csv").iloc[0]
    assert {key: read[key] for key in row} == row and read["split"] == "Test"


def drop_column(path: Path, column: str) -> None:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.drop(columns=[column]).to_csv(path, index=False)


def test_a_missing_column_names_the_file_and_the_column(dataset):
    _, tables = dataset
    path = tables / "mass_case_description_train_set.csv"
    drop_column(path, "pathology")
    with pytest.raises(DataError, match="lacks column.*pathology") as error:
        read_case_description(path)
    assert str(path) in str(error.value)
    path = tables / "calc_case_description_train_set.csv"
    drop_column(path, "breast density")
    with pytest.raises(DataError, match="breast density") as error:
        read_case_description(path)
    assert str(path) in str(error.value)


def test_neither_header_and_bad_values(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("patient_id,view\nP_1,CC\n")
    with pytest.raises(DataError, match="not a CBIS-DDSM case table") as error:
        read_case_description(path)
    assert str(path) in str(error.value)
    row = dict(patient_id="P_00001", side="UP", view="CC", abnormality_id=1, abnormality_type="mass",
               pathology="BENIGN", assessment=3, subtlety=3, breast_density=1,
               image_path="Mass-Training_P_00001_UP_CC/1/2/000000.dcm", crop_path="c", roi_mask_path="r")
    write_case_descriptions([row], path, "mass")
    with pytest.raises(DataError, match="row 1, column 'left or right breast': 'UP'") as error:
        read_case_description(path)
    assert str(path) in str(error.value)
    write_case_descriptions([{**row, "side": "LEFT"}], path, "mass")  # the path says another breast
    with pytest.raises(DataError, match="row 1: image file path") as error:
        read_case_description(path)
    with pytest.raises(DataError, match="not found") as error:
        read_case_description(tmp_path / "absent.csv")
    assert "absent.csv" in str(error.value)


def test_one_lesion_described_twice(dataset):
    _, tables = dataset
    path = tables / "mass_case_description_test_set.csv"
    with pytest.raises(DataError, match="described twice.*row 1.*row 1") as error:
        read_case_descriptions([path, path])
    assert str(path) in str(error.value)


# ---------------------------------------------------------------- files on disk and boxes


@pytest.mark.parametrize("layout", ["nbia", "legacy"])
def test_both_layouts_resolve_and_boxes_match_the_drawn_ones(tmp_path, layout):
    root = tmp_path / "cbis"
    tables = build(root, layout)
    table = with_lesion_boxes(resolve_files(read_case_descriptions(case_description_paths(tables)), root))
    prefix = root / "CBIS-DDSM" if layout == "nbia" else root
    assert len(table) == len(LESIONS)
    for row in table.to_dict("records"):
        lesion = lesion_of(row)
        full = subject_id(lesion.kind, lesion.split, lesion.patient, lesion.side, lesion.view)
        assert Path(row["image_file"]).is_relative_to(prefix / full)
        assert Path(row["roi_mask_file"]).is_relative_to(prefix / f"{full}_{lesion.abnormality_id}")
        assert Path(row["image_file"]).name == "1-1.dcm"
        assert (row["image_rows"], row["image_columns"]) == IMAGE_SHAPE
        assert (row["box_x1"], row["box_y1"], row["box_x2"], row["box_y2"]) == lesion.box
    if layout == "nbia":
        assert all(ROI_MASK in Path(f).parent.name for f in table["roi_mask_file"])
        assert all(CROPPED in Path(f).parent.name for f in table["crop_file"])


@pytest.mark.parametrize("layout", ["nbia", "legacy"])
def test_swapped_crop_and_mask_columns_are_told_apart_by_size(tmp_path, layout):
    straight = resolve_files(read_case_descriptions(case_description_paths(build(tmp_path / "a", layout))),
                             tmp_path / "a")
    root = tmp_path / "b"
    swapped_table = read_case_descriptions(case_description_paths(build(root, layout, swap={0, 3})))
    assert swapped_table.iloc[0]["roi_mask_path"].endswith("000000.dcm")  # the crop's path in the mask column
    swapped = resolve_files(swapped_table, root)
    for column in ("roi_mask_file", "crop_file"):
        assert [Path(f).relative_to(tmp_path / "b") for f in swapped[column]] == [
            Path(f).relative_to(tmp_path / "a") for f in straight[column]]


def lesion_of(row) -> Lesion:
    """The drawn lesion a table row describes."""
    key = (row["patient_id"], row["side"], row["view"], row["abnormality_type"][:4], row["abnormality_id"])
    found = [les for les in LESIONS if (les.patient, les.side, les.view, les.kind, les.abnormality_id) == key]
    assert len(found) == 1
    return found[0]


def test_mask_box_against_a_hand_computation():
    mask = np.zeros((30, 20), np.uint16)
    mask[10:20, 5:13] = 255
    mask[25, 3] = 1  # a stray pixel widens the box
    assert mask_box(mask) == (3, 10, 13, 26)  # x1 = first column, y2 = last row + 1
    assert mask_box(np.zeros((4, 4))) is None
    rng = np.random.default_rng(3)
    for _ in range(20):
        random = rng.random((17, 11)) > 0.97
        if random.any():
            rows, columns = np.nonzero(random)  # independent: extremes of the nonzero indices
            assert mask_box(random) == (columns.min(), rows.min(), columns.max() + 1, rows.max() + 1)


def lesion_file(root: Path, lesion: Lesion, series: str) -> Path:
    subject = subject_id(lesion.kind, lesion.split, lesion.patient, lesion.side, lesion.view, lesion.abnormality_id)
    return root / dicom_path_for("nbia", subject, series, **uids(subject, series))


def test_an_empty_mask_is_an_error_or_excluded(dataset):
    root, tables = dataset
    mask = lesion_file(root, LESIONS[2], ROI_MASK)
    write_mammogram(mask, np.zeros(IMAGE_SHAPE, np.uint8))
    resolved = resolve_files(read_case_descriptions(case_description_paths(tables)), root)
    with pytest.raises(DataError, match="empty") as error:
        with_lesion_boxes(resolved)
    assert str(mask) in str(error.value)
    excluded = []
    boxed = with_lesion_boxes(resolved, excluded)
    assert len(boxed) == len(LESIONS) - 1 and len(excluded) == 1 and str(mask) in excluded[0]
    assert "P_00002" not in set(boxed["patient_id"])


def test_a_mask_whose_size_differs_from_its_image(dataset):
    root, tables = dataset
    mask = lesion_file(root, LESIONS[0], ROI_MASK)
    write_mammogram(mask, mask_for((1, 1, 5, 5), shape=(36, 30)))  # the published cases differ like this
    resolved = resolve_files(read_case_descriptions(case_description_paths(tables)), root)
    assert resolved.iloc[0]["roi_mask_file"] == str(mask)  # still the larger file, not the crop
    with pytest.raises(DataError, match="36 x 30 but its mammogram .* is 40 x 30") as error:
        with_lesion_boxes(resolved)
    assert str(mask) in str(error.value)
    with pytest.raises(DataError, match="36 x 30") as error:
        lesion_box(mask, IMAGE_SHAPE)
    assert str(mask) in str(error.value)


def test_a_row_whose_dicom_is_missing(dataset):
    root, tables = dataset
    shutil.rmtree(root / "CBIS-DDSM" / "Mass-Training_P_00002_RIGHT_CC")
    with pytest.raises(DataError, match="no DICOM") as error:
        resolve_files(read_case_descriptions(case_description_paths(tables)), root)
    message = str(error.value)
    assert "mass_case_description_train_set.csv row 3" in message
    assert str(root / "CBIS-DDSM" / "Mass-Training_P_00002_RIGHT_CC") in message
    with pytest.raises(DataError, match="not found") as error:
        resolve_files(read_case_descriptions(case_description_paths(tables)), root / "absent")
    assert str(root / "absent") in str(error.value)


# ---------------------------------------------------------------- pairs


def test_pairs_by_abnormality_id_with_the_unpaired_counted(dataset):
    root, tables = dataset
    table = with_lesion_boxes(resolve_files(read_case_descriptions(case_description_paths(tables)), root))
    result = pair_views(table)
    pairs = result.pairs
    assert list(pairs["pair"]) == ["Test_P_00010_RIGHT_mass_1", "Training_P_00001_LEFT_mass_1",
                                   "Training_P_00003_LEFT_calcification_1"]
    assert result.unpaired_cc == 2  # P_00002 has no MLO; P_00003's calc 2 differs in pathology
    assert result.unpaired_mlo == 1 and result.rule == "abnormality_id"
    mass = pairs[pairs["pair"] == "Training_P_00001_LEFT_mass_1"].iloc[0]
    assert (mass["cc_box_x1"], mass["cc_box_y1"], mass["cc_box_x2"], mass["cc_box_y2"]) == LESIONS[0].box
    assert (mass["mlo_box_x1"], mass["mlo_box_y1"], mass["mlo_box_x2"], mass["mlo_box_y2"]) == LESIONS[1].box
    assert mass["cc_view"] == "CC" and mass["mlo_view"] == "MLO" and mass["pathology"] == "MALIGNANT"
    assert "Mass-Training_P_00001_LEFT_MLO" in mass["mlo_image_file"]


def test_the_type_pathology_rule_pairs_only_unambiguous_lesions(dataset):
    _, tables = dataset
    result = pair_views(read_case_descriptions(case_description_paths(tables)), rule="type_pathology")
    # P_00003 has two benign CC calcifications and one benign MLO one: ambiguous, skipped.
    assert list(result.pairs["pair"]) == ["Test_P_00010_RIGHT_mass_1", "Training_P_00001_LEFT_mass_1"]
    assert result.unpaired_cc == 3
    with pytest.raises(ConfigError, match="'nearest'.*abnormality_id"):
        pair_views(read_case_descriptions(case_description_paths(tables)), rule="nearest")


def test_no_pair_left_is_an_error_naming_the_tables(tmp_path):
    root = tmp_path / "cbis"
    only_cc = [lesion for lesion in LESIONS if lesion.view == "CC" and lesion.kind == "mass"]
    tables = build(root, "nbia", lesions=only_cc)
    paths = [tables / "mass_case_description_train_set.csv", tables / "mass_case_description_test_set.csv"]
    with pytest.raises(DataError, match="no CC lesion has an MLO partner") as error:
        pair_views(read_case_descriptions(paths))
    assert str(paths[0]) in str(error.value) and str(paths[1]) in str(error.value)
