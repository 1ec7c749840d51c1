"""A synthetic CBIS-DDSM written in the collection's native layout.

The stand-in lets the study run without the 164 GB download and makes CC-to-MLO
registration a real problem: every breast is one 3-D phantom
(:mod:`medrepro.shared.breast_phantom`) projected under cranio-caudal and
oblique compression, so a lesion's MLO position follows from its CC position by
geometry, not by an affine map.

What :func:`generate_cbis_ddsm` writes into ``raw_root``:

* per patient one or two breasts, each with a CC and an MLO full-mammogram
  DICOM (16-bit film density, MONOCHROME2; a few MONOCHROME1 files, stored
  inverted, so readers exercise the inversion), and per lesion annotated on both
  views an ROI-mask DICOM (the image's size, 0/255) and a cropped-image DICOM
  in each view; the folders follow ``layout`` (``nbia``: the current NBIA Data
  Retriever's ``CBIS-DDSM/<SubjectID>/<date>-DDSM-<n>/1.000000-<series>-<n>/1-1.dcm``;
  ``legacy``: ``<SubjectID>/<StudyUID>/<SeriesUID>/1-1.dcm``);
* the four case-description CSVs with the published headers and quirks
  (quoted ROI paths ending in an embedded newline; the crop and ROI-mask
  columns swapped in some rows; mass rows with shape and margins, calc rows
  with type and distribution; breast density 1-4);
* :data:`TRUTH_FILE`, the ground truth no reader may use: each annotated
  lesion's 3-D centre (mm, breast frame) and its projected CC and MLO centres
  in the boxes' pixel-edge coordinates (pixel ``(row, col)`` spans
  ``[col, col + 1) x [row, row + 1)``, so a lesion box ``x1 <= x <= x2``
  contains the centre ``x``);
* ``MANIFEST.sha256`` over everything above.

A patient has lesions of one kind (mass or calcification cluster), as most
CBIS-DDSM patients appear in one table. The Training/Test split is by patient.
Everything random comes from generators seeded by ``seed`` (one per patient,
seeded by ``(seed, patient number)``): the same arguments write the same bytes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medrepro.data.atomic import write_csv
from medrepro.errors import ConfigError, DataError
from medrepro.provenance.pinning import MANIFEST_FILE, write_manifest
from medrepro.shared import breast_phantom
from medrepro.shared.dicom import CROPPED, FULL_MAMMOGRAM, ROI_MASK, deterministic_uid, write_mammogram
from medrepro.studies.mammo_registration.readers.cbis_ddsm import (
    ABNORMALITY_TYPES, CASE_DESCRIPTION_FILES, dicom_path_for, mask_box, subject_id, write_case_descriptions)

log = logging.getLogger(__name__)

LAYOUTS = ("nbia", "legacy")
TRUTH_FILE = "synthetic_truth.csv"
TRUTH_COLUMNS = ["patient_id", "split", "kind", "side", "abnormality_id", "lesion_id", "form",
                 "centre_x_mm", "centre_y_mm", "centre_z_mm", "cc_centre_x", "cc_centre_y",
                 "mlo_centre_x", "mlo_centre_y", "mlo_angle_deg", "pixel_mm"]
DEFAULT_IMAGE_SIZE = breast_phantom.DEFAULT_SHAPE
DEFAULT_TEST_FRACTION = 122 / (985 + 122)  # the paper's test share of CBIS-DDSM cases
DEFAULT_SWAP_FRACTION = 0.2
DEFAULT_MONOCHROME1_FRACTION = 0.05

# The published vocabularies (a subset), drawn per lesion.
MASS_SHAPES = ("OVAL", "ROUND", "IRREGULAR", "LOBULATED")
MASS_MARGINS = ("CIRCUMSCRIBED", "ILL_DEFINED", "OBSCURED", "MICROLOBULATED")
CALC_TYPES = ("PLEOMORPHIC", "AMORPHOUS", "PUNCTATE", "FINE_LINEAR_BRANCHING", "LUCENT_CENTER")
CALC_DISTRIBUTIONS = ("CLUSTERED", "SEGMENTAL", "LINEAR", "REGIONAL")
PATHOLOGIES = ("MALIGNANT", "BENIGN", "BENIGN_WITHOUT_CALLBACK")
_PHANTOM_KIND = {"mass": "mass", "calc": "calcification"}
_MAX_BREAST_TRIES = 5
_CROP_MARGIN_PX = 8


@dataclass(frozen=True)
class _Patient:
    """What the top-level draw fixes for one patient."""

    number: int
    patient_id: str
    split: str
    force_monochrome1: bool


# ---------------------------------------------------------------- arguments


def _check_arguments(n_patients, image_size, layout, test_fraction, swap_fraction, monochrome1_fraction):
    if isinstance(n_patients, bool) or not isinstance(n_patients, (int, np.integer)) or n_patients < 1:
        raise ConfigError(f"synthetic CBIS-DDSM: n_patients={n_patients!r} must be a whole number >= 1")
    if len(tuple(image_size)) != 2 or min(int(n) for n in image_size) < 64:
        raise ConfigError(f"synthetic CBIS-DDSM: image_size={image_size!r} must be (rows, cols), each >= 64")
    if layout not in LAYOUTS:
        raise ConfigError(f"synthetic CBIS-DDSM: layout={layout!r} is unknown; use one of {', '.join(LAYOUTS)}")
    for name, value in (("test_fraction", test_fraction), ("swap_fraction", swap_fraction),
                        ("monochrome1_fraction", monochrome1_fraction)):
        if not 0.0 <= float(value) < 1.0:
            raise ConfigError(f"synthetic CBIS-DDSM: {name}={value!r} must lie in [0, 1)")


def _check_empty(raw_root: Path) -> None:
    """The generator writes into a fresh directory (the caller's atomic target), never over other files."""
    if raw_root.exists() and (not raw_root.is_dir() or any(raw_root.iterdir())):
        raise DataError(raw_root, "is not an empty directory; generate the synthetic CBIS-DDSM into an empty one "
                                  "(write through medrepro.data.atomic.atomic_dir to replace an old copy)")
    raw_root.mkdir(parents=True, exist_ok=True)


def _patients(rng: np.random.Generator, n_patients: int, test_fraction: float) -> list[_Patient]:
    """Patient ids with gaps (as published), the split by patient, and the one forced MONOCHROME1 patient."""
    numbers = np.cumsum(rng.integers(1, 4, n_patients))
    n_test = int(round(test_fraction * n_patients))
    if n_patients >= 2 and test_fraction > 0:
        n_test = min(max(n_test, 1), n_patients - 1)  # both splits present whenever possible
    test = set(rng.choice(n_patients, n_test, replace=False).tolist())
    forced = int(rng.integers(n_patients))
    return [_Patient(i, f"P_{int(numbers[i]):05d}", "Test" if i in test else "Training", i == forced)
            for i in range(n_patients)]


# ---------------------------------------------------------------- one breast


def _annotatable(view: breast_phantom.ProjectedView, lesion_id: int) -> bool:
    """A lesion is annotated on a view when its mask is there and its box holds its projected centre."""
    mask = view.lesion_masks.get(lesion_id)
    box = None if mask is None else mask_box(mask)
    if box is None:
        return False
    row, col = view.lesion_centres_px[lesion_id]
    x1, y1, x2, y2 = box
    return x1 <= col + 0.5 <= x2 and y1 <= row + 0.5 <= y2


def _project_breast(rng: np.random.Generator, kind: str, side: str, image_size):
    """A breast with 1-2 lesions of ``kind`` annotatable on both views (redrawn a few times if none is)."""
    n_lesions = 1 if rng.uniform() < 0.8 else 2
    counts = {"n_masses": n_lesions if kind == "mass" else 0, "n_clusters": n_lesions if kind == "calc" else 0}
    for _ in range(_MAX_BREAST_TRIES):
        breast = breast_phantom.make_breast(rng, laterality=side[0], n_single=0, n_vascular=0, **counts)
        cc = breast_phantom.project_cc(breast, rng, image_size)
        mlo = breast_phantom.project_mlo(breast, rng, image_size)
        lesions = [lesion for lesion in breast.lesions if lesion.kind == _PHANTOM_KIND[kind]
                   and _annotatable(cc, lesion.id) and _annotatable(mlo, lesion.id)]
        if lesions:
            return breast, cc, mlo, lesions
    return breast, cc, mlo, []


def _lesion_attributes(rng: np.random.Generator, kind: str, form: str) -> dict:
    """Pathology, BI-RADS assessment, subtlety and the kind's descriptors, as in the case tables."""
    pathology = PATHOLOGIES[int(rng.choice(3, p=[0.45, 0.4, 0.15]))]
    assessment = int(rng.integers(4, 6)) if pathology == "MALIGNANT" else int(rng.integers(2, 5))
    attributes = {"pathology": pathology, "assessment": assessment, "subtlety": int(rng.integers(1, 6))}
    if kind == "mass":
        spiculated = form == "spiculated"
        attributes["mass_shape"] = "IRREGULAR" if spiculated else MASS_SHAPES[int(rng.integers(len(MASS_SHAPES)))]
        attributes["mass_margins"] = "SPICULATED" if spiculated else MASS_MARGINS[int(rng.integers(len(MASS_MARGINS)))]
    else:
        attributes["calc_type"] = CALC_TYPES[int(rng.integers(len(CALC_TYPES)))]
        attributes["calc_distribution"] = CALC_DISTRIBUTIONS[int(rng.integers(len(CALC_DISTRIBUTIONS)))]
    return attributes


def _density_category(density: float) -> int:
    """BI-RADS density 1 (fatty) .. 4 (extremely dense) from the phantom's glandular fraction 0..1."""
    return int(np.clip(1 + np.floor(density * 4), 1, 4))


def _film_values(image: np.ndarray) -> np.ndarray:
    """Film density 0..1 as 16-bit stored values (bright = dense, MONOCHROME2)."""
    return np.round(np.clip(image, 0.0, 1.0) * 65535.0).astype(np.uint16)


def _crop_box(box: tuple[int, int, int, int], shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """The lesion box grown by a margin, inside the image and smaller than it (the mask is told from it by size)."""
    x1, y1, x2, y2 = box
    mx, my = max(_CROP_MARGIN_PX, (x2 - x1) // 4), max(_CROP_MARGIN_PX, (y2 - y1) // 4)
    x1, y1, x2, y2 = max(0, x1 - mx), max(0, y1 - my), min(shape[1], x2 + mx), min(shape[0], y2 + my)
    if (y2 - y1, x2 - x1) == tuple(shape):
        y2 -= 1
    return x1, y1, x2, y2


# ---------------------------------------------------------------- DICOM files


class _Writer:
    """Writes a DICOM series in the chosen layout and returns its path as the case tables give it."""

    def __init__(self, root: Path, layout: str, seed: int):
        self.root, self.layout, self.seed = root, layout, seed

    def __call__(self, subject: str, series: str, pixels: np.ndarray, *, date: tuple[int, int, int],
                 side: str, view: str, photometric: str = "MONOCHROME2") -> str:
        key = f"synthetic-cbis-ddsm/{self.seed}/{subject}"
        ids = {"study_uid": deterministic_uid(key, "study"), "series_uid": deterministic_uid(key, series)}
        year, month, day = date
        relative = dicom_path_for(self.layout, subject, series, **ids, date=f"{month:02d}-{day:02d}-{year}")
        write_mammogram(self.root / relative, pixels, photometric=photometric, uid_key=f"{key}/{series}",
                        StudyInstanceUID=ids["study_uid"], SeriesInstanceUID=ids["series_uid"],
                        PatientID=subject, StudyDate=f"{year}{month:02d}{day:02d}", Laterality=side[0],
                        ViewPosition=view, SeriesDescription=series, BodyPartExamined="BREAST")
        # the published tables number the ROI mask 000001.dcm and the crop 000000.dcm
        return dicom_path_for("csv", subject, series, **ids, instance=2 if series == ROI_MASK else 1)


def _write_view(write: _Writer, rng: np.random.Generator, names: dict, projection, lesions, abnormality_ids,
                monochrome1: bool) -> dict[int, dict]:
    """One view's full mammogram and its lesions' ROI masks and crops; {lesion id: case-table paths}."""
    view, date = names["view"], names["date"]
    image = _film_values(projection.image)
    full = subject_id(names["kind"], names["split"], names["patient_id"], names["side"], view)
    stored, photometric = (65535 - image, "MONOCHROME1") if monochrome1 else (image, "MONOCHROME2")
    image_path = write(full, FULL_MAMMOGRAM, stored, date=date, side=names["side"], view=view,
                       photometric=photometric)
    paths = {}
    for lesion in lesions:
        mask = projection.lesion_masks[lesion.id]
        x1, y1, x2, y2 = _crop_box(mask_box(mask), image.shape)
        lesion_subject = f"{full}_{abnormality_ids[lesion.id]}"
        common = {"date": date, "side": names["side"], "view": view}
        roi = write(lesion_subject, ROI_MASK, np.where(mask, 255, 0).astype(np.uint8), **common)
        crop = write(lesion_subject, CROPPED, np.ascontiguousarray(image[y1:y2, x1:x2]), **common)
        paths[lesion.id] = {"image_path": image_path, "roi_mask_path": roi, "crop_path": crop}
    return paths


# ---------------------------------------------------------------- one patient


def _centre_xy(view: breast_phantom.ProjectedView, lesion_id: int) -> tuple[float, float]:
    """The projected centre in pixel-edge coordinates (x = column + 0.5, y = row + 0.5)."""
    row, col = view.lesion_centres_px[lesion_id]
    return float(col) + 0.5, float(row) + 0.5


def _patient(write: _Writer, seed: int, patient: _Patient, swap_fraction: float, monochrome1_fraction: float,
             image_size) -> tuple[str, list[dict], list[dict]]:
    """One patient's DICOMs; (kind, case-table rows, truth rows)."""
    rng = np.random.default_rng((seed, patient.number))
    kind = "mass" if rng.uniform() < 0.5 else "calc"
    first = "LEFT" if rng.uniform() < 0.5 else "RIGHT"
    sides = sorted({first, "RIGHT" if first == "LEFT" else "LEFT"}) if rng.uniform() < 0.3 else [first]
    date = (int(rng.integers(2016, 2018)), int(rng.integers(1, 13)), int(rng.integers(1, 29)))
    rows, truth = [], []
    for breast_index, side in enumerate(sides):
        breast, cc, mlo, lesions = _project_breast(rng, kind, side, image_size)
        if not lesions:
            log.warning("synthetic CBIS-DDSM: %s %s has no lesion visible on both views; left out",
                        patient.patient_id, side)
            continue
        abnormality_ids = {lesion.id: number for number, lesion in enumerate(lesions, start=1)}
        attributes = {lesion.id: _lesion_attributes(rng, kind, lesion.form) for lesion in lesions}
        density = _density_category(breast.density)
        names = {"kind": kind, "split": patient.split, "patient_id": patient.patient_id, "side": side, "date": date}
        for view, projection in (("CC", cc), ("MLO", mlo)):
            monochrome1 = (patient.force_monochrome1 and breast_index == 0 and view == "CC") \
                or rng.uniform() < monochrome1_fraction
            paths = _write_view(write, rng, {**names, "view": view}, projection, lesions, abnormality_ids,
                                monochrome1)
            for lesion in lesions:
                row = {"patient_id": patient.patient_id, "side": side, "view": view,
                       "abnormality_id": abnormality_ids[lesion.id], "abnormality_type": ABNORMALITY_TYPES[kind],
                       "breast_density": density, **attributes[lesion.id], **paths[lesion.id]}
                row["swapped"] = bool(rng.uniform() < swap_fraction)
                rows.append(row)
        for lesion in lesions:
            (cc_x, cc_y), (mlo_x, mlo_y) = _centre_xy(cc, lesion.id), _centre_xy(mlo, lesion.id)
            truth.append({"patient_id": patient.patient_id, "split": patient.split, "kind": kind, "side": side,
                          "abnormality_id": abnormality_ids[lesion.id], "lesion_id": lesion.id, "form": lesion.form,
                          "centre_x_mm": lesion.centre_mm[0], "centre_y_mm": lesion.centre_mm[1],
                          "centre_z_mm": lesion.centre_mm[2], "cc_centre_x": cc_x, "cc_centre_y": cc_y,
                          "mlo_centre_x": mlo_x, "mlo_centre_y": mlo_y, "mlo_angle_deg": mlo.params["angle_deg"],
                          "pixel_mm": cc.params["pixel_mm"]})
    return kind, rows, truth


# ---------------------------------------------------------------- the collection


def _apply_swaps(rows: list[dict]) -> None:
    """Exchange the crop and ROI-mask paths of the rows drawn for it (at least one row, so the quirk is there)."""
    if rows and not any(row["swapped"] for row in rows):
        rows[0]["swapped"] = True
    for row in rows:
        if row.pop("swapped"):
            row["crop_path"], row["roi_mask_path"] = row["roi_mask_path"], row["crop_path"]


def generate_cbis_ddsm(raw_root: str | Path, n_patients: int, seed: int,
                       image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE, layout: str = "nbia",
                       test_fraction: float = DEFAULT_TEST_FRACTION, swap_fraction: float = DEFAULT_SWAP_FRACTION,
                       monochrome1_fraction: float = DEFAULT_MONOCHROME1_FRACTION) -> pd.DataFrame:
    """Write a synthetic CBIS-DDSM into the empty directory ``raw_root``; returns the truth table.

    ``image_size`` (rows, cols) of every full mammogram; ``layout`` ``nbia`` or
    ``legacy`` (see the module docstring); ``test_fraction`` of patients in the
    Test split (at least one patient in each split when there are two or more);
    ``swap_fraction`` of case-table rows with crop and ROI-mask columns
    exchanged (at least one row); ``monochrome1_fraction`` of full mammograms
    stored as MONOCHROME1 (at least one). The case tables, :data:`TRUTH_FILE`
    and ``MANIFEST.sha256`` lie at the top of ``raw_root``. Write through
    :func:`medrepro.data.atomic.atomic_dir` to publish it whole.
    """
    _check_arguments(n_patients, image_size, layout, test_fraction, swap_fraction, monochrome1_fraction)
    raw_root = Path(raw_root)
    _check_empty(raw_root)
    image_size = tuple(int(n) for n in image_size)
    write = _Writer(raw_root, layout, int(seed))
    tables = {key: [] for key in CASE_DESCRIPTION_FILES}
    truth = []
    for patient in _patients(np.random.default_rng(int(seed)), int(n_patients), float(test_fraction)):
        kind, rows, patient_truth = _patient(write, int(seed), patient, swap_fraction, monochrome1_fraction,
                                             image_size)
        tables[(kind, patient.split)].extend(rows)
        truth.extend(patient_truth)
    _apply_swaps([row for key in CASE_DESCRIPTION_FILES for row in tables[key]])
    for (kind, split), rows in tables.items():
        write_case_descriptions(rows, raw_root / CASE_DESCRIPTION_FILES[(kind, split)], kind)
    truth_table = pd.DataFrame(truth, columns=TRUTH_COLUMNS)
    write_csv(raw_root / TRUTH_FILE, truth_table, float_format="%.6f")  # positions to a millionth of a pixel
    write_manifest(raw_root, raw_root / MANIFEST_FILE)
    log.info("wrote a synthetic CBIS-DDSM (%d patients, %d lesions, %s layout) to %s", n_patients,
             len(truth_table), layout, raw_root)
    return truth_table
