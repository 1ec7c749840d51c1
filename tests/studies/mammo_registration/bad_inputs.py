"""The mammography registration study's bad inputs: CBIS-DDSM's DICOMs and case tables.

Run by tests/workflow/test_bad_inputs.py with the cases of every other study (tests/support/bad_inputs.py says how);
test_bad_input_summaries.py checks the stand-in they damage, and the summary of a case that is not an error.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable

import numpy as np

from support.bad_inputs import (DICOM_PATH_CHARS, INSTRUCTIONS_CHARS, LISTING_CHARS, MAX_MESSAGE_CHARS, Stock,
                                StepRun, delete, nothing_obtained, step_case)

CBIS = "CBIS-DDSM"
MAMMO_OUT = "results/mammo_registration"
MAMMO_PAIRS = tuple(f"{MAMMO_OUT}/{name}" for name in ("pairs.npz", "pairs.csv", "pairs.json"))
MAMMO_PARAMS = {"seed": 0, "longest_side": 64, "aspect": 0.6, "pairing_rule": "abnormality_id",
                "val_fraction": 0.25, "mirror_side": "LEFT", "exclude_bad_masks": False}
MASS_TRAIN, CALC_TEST = "mass_case_description_train_set.csv", "calc_case_description_test_set.csv"


def make_stock(raw: Path) -> None:
    """A small stand-in of CBIS-DDSM in ``raw/CBIS-DDSM``."""
    from medrepro.studies.mammo_registration.synthetic import generate_cbis_ddsm

    # Six patients give pairs in every split (train, val and test; see test_mammo_stand_in_pairs_fill_every_split).
    generate_cbis_ddsm(raw / CBIS, n_patients=6, seed=0, image_size=(120, 72), test_fraction=0.35)


# ---------------------------------------------------------------- the steps run on a damaged copy


def mammo_prepare(damage: Callable[[Path], None]) -> Callable:
    """The prepare step (DICOMs and case tables -> pairs) on a copy of the CBIS-DDSM stand-in, damaged by ``damage``."""

    def prepare(case: Path, stock: Stock) -> StepRun:
        raw = stock.copy_raw(CBIS, case)
        damage(raw)
        out = case / MAMMO_OUT
        return StepRun("mammo_registration_prepare", "medrepro.studies.mammo_registration.steps:prepare",
                       {"pairs": str(out / "pairs.npz"), "table": str(out / "pairs.csv"),
                        "summary": str(out / "pairs.json")},
                       {"raw_dir": str(raw), **MAMMO_PARAMS})

    return prepare


def mammo_obtain(damage: Callable[[Path], None]) -> Callable:
    """The obtain step (layout, then first-use pinning) on a user's copy of the stand-in, damaged by ``damage``."""

    def prepare(case: Path, stock: Stock) -> StepRun:
        raw = stock.copy_raw(CBIS, case, user_copy=True)
        damage(raw)
        return StepRun("mammo_registration_obtain", "medrepro.studies.mammo_registration.steps:obtain",
                       {"manifest": str(case / MAMMO_OUT / "raw_manifest.sha256")},
                       {"source": "verify", "raw_dir": str(raw)})

    return prepare


# ---- damage to DICOMs


def _series_dicom(raw: Path, subject: str, series: str) -> Path:
    """The one DICOM of a subject's series (the stand-in uses the NBIA retriever's layout)."""
    found = sorted((raw / CBIS / subject).glob(f"*/1.000000-{series}-*/*.dcm"))
    assert len(found) == 1, (subject, series, found)  # the stand-in changed: pick another subject
    return found[0]


def _full_image(raw: Path, subject: str) -> Path:
    return _series_dicom(raw, subject, "full mammogram images")


def _roi_mask(raw: Path, subject: str) -> Path:
    return _series_dicom(raw, subject, "ROI mask images")


def _truncate_dicom(subject: str) -> Callable[[Path], None]:
    """Cut a full mammogram in the middle of its pixel data (its header still reads), as an interrupted copy."""

    def damage(raw: Path) -> None:
        path = _full_image(raw, subject)
        with open(path, "r+b") as handle:
            handle.truncate(path.stat().st_size // 2)

    return damage


def _retag(locate: Callable[[Path, str], Path], subject: str, **tags) -> Callable[[Path], None]:
    """Rewrite one DICOM with some header elements changed and its pixel data kept."""

    def damage(raw: Path) -> None:
        import pydicom

        path = locate(raw, subject)
        dataset = pydicom.dcmread(path)
        for keyword, value in tags.items():
            setattr(dataset, keyword, value)
        dataset.save_as(path)

    return damage


def _rewrite_mask(subject: str, pixels: Callable[[tuple[int, int]], np.ndarray]) -> Callable[[Path], None]:
    """Replace a lesion's ROI mask by ``pixels(shape of the original mask)``."""

    def damage(raw: Path) -> None:
        from medrepro.shared.dicom import dicom_shape, write_mammogram

        path = _roi_mask(raw, subject)
        write_mammogram(path, pixels(dicom_shape(path)), PatientID=subject, SeriesDescription="ROI mask images")

    return damage


def _mask_larger_than_its_image(shape: tuple[int, int]) -> np.ndarray:
    # Larger than the mammogram, so it stays the largest file of its series and is still taken for the mask.
    mask = np.zeros((shape[0] + 10, shape[1] + 8), np.uint8)
    mask[20:30, 10:20] = 255
    return mask


# ---- damage to case tables


def _edit_case_table(name: str, edit: Callable[[list[str], list[list[str]]], tuple[list[str], list[list[str]]]],
                     changes: int | None = None) -> Callable[[Path], None]:
    """Rewrite a case table through the csv module (its quoted paths hold newlines); ``changes``: how many rows
    (or columns) ``edit`` must remove, so that a changed stand-in fails here rather than in the case."""

    def damage(raw: Path) -> None:
        path = raw / name
        with open(path, newline="", encoding="utf-8") as handle:
            header, *rows = list(csv.reader(handle))
        new_header, new_rows = edit(header, rows)
        if changes is not None:
            assert len(header) + len(rows) - len(new_header) - len(new_rows) == changes, (name, header, rows)
        with open(path, "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle, lineterminator="\n").writerows([new_header, *new_rows])

    return damage


def _without_column(column: str) -> Callable:
    def edit(header, rows):
        keep = [i for i, name in enumerate(header) if name != column]
        return [header[i] for i in keep], [[row[i] for i in keep] for row in rows]

    return edit


def _without_mlo_rows(patient: str | None = None, side: str | None = None, abnormality: str | None = None) -> Callable:
    """Drop the MLO rows (of one lesion, when given) from a case table."""

    def edit(header, rows):
        column = {name: i for i, name in enumerate(header)}
        wanted = {"image view": "MLO", "patient_id": patient, "left or right breast": side,
                  "abnormality id": abnormality}
        drop = [row for row in rows
                if all(value is None or row[column[key]] == value for key, value in wanted.items())]
        return header, [row for row in rows if row not in drop]

    return edit


def _no_mlo_rows_anywhere(raw: Path) -> None:
    from medrepro.studies.mammo_registration.readers.cbis_ddsm import CASE_DESCRIPTION_FILES

    for name in CASE_DESCRIPTION_FILES.values():
        _edit_case_table(name, _without_mlo_rows())(raw)


def one_cc_without_its_mlo(raw: Path) -> None:
    """The Test patient P_00003 has two left-breast lesions: dropping one's MLO row keeps a test pair."""
    _edit_case_table(CALC_TEST, _without_mlo_rows("P_00003", "LEFT", "2"), changes=1)(raw)


# ---------------------------------------------------------------- the cases

CASES: list = [  # BadInput, or pytest.param(BadInput, marks=xfail) for a known library problem
    step_case("mammo_truncated_full_mammogram", mammo_prepare(_truncate_dicom("Mass-Training_P_00007_LEFT_CC")),
              "Mass-Training_P_00007_LEFT_CC/", "truncated", max_chars=MAX_MESSAGE_CHARS + DICOM_PATH_CHARS,
              absent=MAMMO_PAIRS),
    step_case("mammo_palette_colour_dicom",
              mammo_prepare(_retag(_full_image, "Calc-Test_P_00003_RIGHT_MLO",
                                   PhotometricInterpretation="PALETTE COLOR")),
              "Calc-Test_P_00003_RIGHT_MLO/", "unsupported PhotometricInterpretation 'PALETTE COLOR'",
              "MONOCHROME1 or MONOCHROME2", absent=MAMMO_PAIRS),
    step_case("mammo_32_bit_dicom",
              mammo_prepare(_retag(_full_image, "Calc-Training_P_00009_LEFT_CC", BitsAllocated=32)),
              "Calc-Training_P_00009_LEFT_CC/", "unsupported BitsAllocated 32", "8 or 16", absent=MAMMO_PAIRS),
    step_case("mammo_mask_stored_bits_beyond_allocated",
              mammo_prepare(_retag(_roi_mask, "Calc-Training_P_00005_RIGHT_MLO_1", BitsStored=12)),
              "Calc-Training_P_00005_RIGHT_MLO_1/", "BitsStored 12 is outside 1..BitsAllocated (8)",
              absent=MAMMO_PAIRS),
    step_case("mammo_case_table_without_abnormality_id",
              mammo_prepare(_edit_case_table(MASS_TRAIN, _without_column("abnormality id"), changes=1)),
              f"{MASS_TRAIN}: mass case table lacks column(s) abnormality id", max_chars=LISTING_CHARS,
              absent=MAMMO_PAIRS),
    step_case("mammo_case_table_without_image_paths",
              mammo_prepare(_edit_case_table(CALC_TEST, _without_column("image file path"), changes=1)),
              f"{CALC_TEST}: calc case table lacks column(s) image file path", max_chars=LISTING_CHARS,
              absent=MAMMO_PAIRS),
    step_case("mammo_missing_full_mammogram_folder",
              mammo_prepare(delete(f"{CBIS}/Mass-Training_P_00007_LEFT_MLO")),
              f"Mass-Training_P_00007_LEFT_MLO: no DICOM for {MASS_TRAIN} row",
              "image file path", max_chars=INSTRUCTIONS_CHARS, absent=MAMMO_PAIRS),
    step_case(
        "mammo_mask_larger_than_its_image",
        mammo_prepare(_rewrite_mask("Mass-Test_P_00010_RIGHT_CC_1", _mask_larger_than_its_image)),
        "Mass-Test_P_00010_RIGHT_CC_1/", "ROI mask is 130 x 80", "120 x 72", "exclude_bad_masks",
        max_chars=MAX_MESSAGE_CHARS + 2 * DICOM_PATH_CHARS, absent=MAMMO_PAIRS),
    step_case(
        "mammo_empty_mask",
        mammo_prepare(_rewrite_mask("Calc-Training_P_00008_RIGHT_MLO_1", lambda shape: np.zeros(shape, np.uint8))),
        "Calc-Training_P_00008_RIGHT_MLO_1/", "is empty (no nonzero pixel)", "exclude_bad_masks",
        max_chars=MAX_MESSAGE_CHARS + 2 * DICOM_PATH_CHARS, absent=MAMMO_PAIRS),
    # Not an error, but never silent: the skipped CC lesions are counted (and in pairs.json, see
    # test_bad_input_summaries.py).
    step_case("mammo_cc_without_mlo_partner", mammo_prepare(one_cc_without_its_mlo),
              "1 CC lesion(s) have no MLO partner under pairing rule 'abnormality_id'", exit_code=0, level="WARNING"),
    step_case("mammo_no_pair_left", mammo_prepare(_no_mlo_rows_anywhere), MASS_TRAIN, CALC_TEST,
              "no CC lesion has an MLO partner under pairing rule 'abnormality_id'", max_chars=LISTING_CHARS,
              absent=MAMMO_PAIRS),
    step_case(
        "mammo_obtain_missing_subject_folder", mammo_obtain(delete(f"{CBIS}/Mass-Training_P_00007_LEFT_MLO")),
        "no DICOM folder for 1 of the", "Mass-Training_P_00007_LEFT_MLO", "cancerimagingarchive.net",
        max_chars=INSTRUCTIONS_CHARS, absent=nothing_obtained("mammo_registration")),
    step_case("mammo_obtain_missing_case_table", mammo_obtain(delete(CALC_TEST)),
              f"case-description CSV(s) missing: {CALC_TEST}", "cancerimagingarchive.net",
              max_chars=INSTRUCTIONS_CHARS, absent=nothing_obtained("mammo_registration")),
]
