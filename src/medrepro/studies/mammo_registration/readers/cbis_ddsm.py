"""CBIS-DDSM as published on TCIA: the four case-description CSVs and the DICOM folders.

Case tables (``mass_case_description_{train,test}_set.csv``,
``calc_case_description_{train,test}_set.csv``), one row per abnormality:

* mass header: ``patient_id,breast_density,left or right breast,image view,
  abnormality id,abnormality type,mass shape,mass margins,assessment,pathology,
  subtlety,image file path,cropped image file path,ROI mask file path``;
  the calc header has ``breast density`` (a space) and ``calc type,calc
  distribution`` instead of shape and margins. Either density spelling is
  accepted in either table.
* The paths name ``<SubjectID>/<StudyUID>/<SeriesUID>/00000N.dcm``; a path may
  be quoted and end with an embedded newline (stripped here). The crop and
  ROI-mask columns are sometimes swapped, so the files are told apart by size:
  the mask has its mammogram's size, the crop is smaller.
* SubjectID = ``{Mass|Calc}-{Training|Test}_P_00001_{LEFT|RIGHT}_{CC|MLO}``,
  plus ``_<abnormality id>`` for the ROI-mask and crop series; the split
  (Training/Test) is read from it.

On disk (``root``) a subject folder is found by its name in either layout:
the current NBIA Data Retriever's
``CBIS-DDSM/<SubjectID>/<MM-DD-YYYY>-DDSM-<n>/1.000000-<series>-<n>/1-1.dcm``
or the older ``<SubjectID>/<StudyUID>/<SeriesUID>/1-1.dcm``.

Lesion boxes are the bounding boxes of the ROI masks' nonzero pixels, as
half-open pixel-edge coordinates ``(x1, y1, x2, y2)`` with x = column:
columns ``x1 .. x2 - 1`` and rows ``y1 .. y2 - 1`` hold the lesion, so
``x2 - x1`` is its width in pixels.

CC/MLO pairs: the same patient, side and split, with a lesion on both views.
CBIS-DDSM does not say which lesion on the CC is which on the MLO (an
abnormality id numbers the lesions of one image); the correspondence rules in
:data:`PAIRING_RULES` are heuristics the data do not confirm.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from medrepro.data.atomic import atomic_path
from medrepro.errors import ConfigError, DataError, name_list
from medrepro.shared.dicom import CROPPED, FULL_MAMMOGRAM, ROI_MASK, dicom_shape, read_mammogram

# ---------------------------------------------------------------- the published tables

KINDS = ("mass", "calc")
SPLITS = ("Training", "Test")
SIDES = ("LEFT", "RIGHT")
VIEWS = ("CC", "MLO")
PATHOLOGIES = ("MALIGNANT", "BENIGN", "BENIGN_WITHOUT_CALLBACK")
ABNORMALITY_TYPES = {"mass": "mass", "calc": "calcification"}
CASE_DESCRIPTION_FILES = {
    ("mass", "Training"): "mass_case_description_train_set.csv",
    ("mass", "Test"): "mass_case_description_test_set.csv",
    ("calc", "Training"): "calc_case_description_train_set.csv",
    ("calc", "Test"): "calc_case_description_test_set.csv",
}
_DESCRIPTORS = {"mass": ("mass shape", "mass margins"), "calc": ("calc type", "calc distribution")}
_DENSITY = {"mass": "breast_density", "calc": "breast density"}
_DENSITY_VARIANTS = ("breast_density", "breast density")
_PATH_COLUMNS = {"image file path": "image_path", "cropped image file path": "crop_path",
                 "ROI mask file path": "roi_mask_path"}


def published_header(kind: str) -> list[str]:
    """The column names of a ``kind`` ("mass" or "calc") case table, in the published order."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return ["patient_id", _DENSITY[kind], "left or right breast", "image view", "abnormality id",
            "abnormality type", *_DESCRIPTORS[kind], "assessment", "pathology", "subtlety",
            *_PATH_COLUMNS]


#: The normalised table: one row per abnormality, every table and split together.
TABLE_COLUMNS = ["patient_id", "side", "view", "abnormality_id", "abnormality_type", "pathology", "assessment",
                 "subtlety", "breast_density", "split", "image_path", "roi_mask_path", "crop_path", "source", "row"]
_SUBJECT_RE = re.compile(r"^(Mass|Calc)-(Training|Test)_(P_\d+)_(LEFT|RIGHT)_(CC|MLO)(?:_(\d+))?$")


@dataclass(frozen=True)
class Subject:
    """A parsed SubjectID: ``Mass-Training_P_00001_LEFT_CC`` (+ ``_1`` for a lesion's series)."""

    kind: str
    split: str
    patient_id: str
    side: str
    view: str
    abnormality_id: int | None = None

    @property
    def name(self) -> str:
        base = f"{self.kind.capitalize()}-{self.split}_{self.patient_id}_{self.side}_{self.view}"
        return base if self.abnormality_id is None else f"{base}_{self.abnormality_id}"


def subject_id(kind: str, split: str, patient_id: str, side: str, view: str,
               abnormality_id: int | None = None) -> str:
    """The SubjectID (top folder) of a full mammogram, or of a lesion's series with ``abnormality_id``."""
    return Subject(kind, split, patient_id, side, view, abnormality_id).name


def parse_subject(name: str) -> Subject | None:
    """The parts of a SubjectID, or None when ``name`` is not one."""
    match = _SUBJECT_RE.match(name)
    if match is None:
        return None
    kind, split, patient, side, view, abnormality = match.groups()
    return Subject(kind.lower(), split, patient, side, view, None if abnormality is None else int(abnormality))


def clean_path(value: str) -> str:
    """A published path without its quirks: surrounding whitespace, embedded newlines, quotes, backslashes."""
    return value.strip().strip('"').strip().replace("\\", "/")


def path_subject(path: str) -> str:
    """The SubjectID a published path starts with (its first component)."""
    return clean_path(path).split("/", 1)[0]


def _table_kind(path: Path, header: Sequence[str]) -> str:
    has = set(header)
    kinds = [kind for kind in KINDS if set(_DESCRIPTORS[kind]) <= has]
    if len(kinds) != 1:
        raise DataError(path, "not a CBIS-DDSM case table: the header has neither 'mass shape,mass margins' nor "
                              f"'calc type,calc distribution' (found: {name_list(header, 20)})")
    return kinds[0]


def _check_header(path: Path, header: Sequence[str]) -> tuple[str, str]:
    """(kind, density column name) of a table, or a DataError naming the missing columns."""
    kind = _table_kind(path, header)
    density = [name for name in _DENSITY_VARIANTS if name in header]
    required = [name for name in published_header(kind) if name not in _DENSITY_VARIANTS]
    missing = [name for name in required if name not in header] + ([] if density else [_DENSITY[kind]])
    if missing:
        raise DataError(path, f"{kind} case table lacks column(s) {name_list(missing, 20)}; "
                              f"expected the published header {','.join(published_header(kind))}")
    return kind, density[0]


def _integer(path: Path, row: int, column: str, value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise DataError(path, f"row {row}, column {column!r}: {value!r} is not an integer") from None


def _choice(path: Path, row: int, column: str, value: str, allowed: Sequence[str]) -> str:
    value = value.strip()
    if value not in allowed:
        raise DataError(path, f"row {row}, column {column!r}: {value!r} is not one of {', '.join(allowed)}")
    return value


def _normalised_row(path: Path, row: int, record: Mapping[str, str], kind: str, density: str) -> dict:
    """One published record in the normalised form, every value checked."""
    if any(value is None for value in record.values()):
        raise DataError(path, f"row {row} has fewer fields than the header")
    out = {
        "patient_id": record["patient_id"].strip(),
        "side": _choice(path, row, "left or right breast", record["left or right breast"], SIDES),
        "view": _choice(path, row, "image view", record["image view"], VIEWS),
        "abnormality_id": _integer(path, row, "abnormality id", record["abnormality id"]),
        "abnormality_type": _choice(path, row, "abnormality type", record["abnormality type"],
                                    (ABNORMALITY_TYPES[kind],)),
        "pathology": _choice(path, row, "pathology", record["pathology"], PATHOLOGIES),
        "assessment": _integer(path, row, "assessment", record["assessment"]),
        "subtlety": _integer(path, row, "subtlety", record["subtlety"]),
        "breast_density": _integer(path, row, density, record[density]),
    }
    for column, key in _PATH_COLUMNS.items():
        out[key] = clean_path(record[column] or "")
        if not out[key]:
            raise DataError(path, f"row {row}, column {column!r} is empty")
    subject = parse_subject(path_subject(out["image_path"]))
    expected = (kind, out["patient_id"], out["side"], out["view"], None)
    if subject is None or (subject.kind, subject.patient_id, subject.side, subject.view,
                           subject.abnormality_id) != expected:
        raise DataError(path, f"row {row}: image file path {out['image_path']!r} does not start with the SubjectID "
                              f"{kind.capitalize()}-<Training|Test>_{out['patient_id']}_{out['side']}_{out['view']}")
    out["split"] = subject.split
    out.update(source=str(path), row=row)
    return out


def read_case_description(path: str | Path) -> pd.DataFrame:
    """One published case table, normalised to :data:`TABLE_COLUMNS` (``row`` counts data rows from 1)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "case-description CSV not found; download it from the CBIS-DDSM page on TCIA")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read the case-description CSV: {exc}") from exc
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip() for name in (reader.fieldnames or [])]
    reader.fieldnames = header
    kind, density = _check_header(path, header)
    try:
        rows = [_normalised_row(path, number, record, kind, density)
                for number, record in enumerate(reader, start=1)]
    except csv.Error as exc:
        raise DataError(path, f"malformed CSV: {exc}") from exc
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _check_unique(table: pd.DataFrame) -> None:
    key = ["split", "patient_id", "side", "view", "abnormality_type", "abnormality_id"]
    duplicated = table[table.duplicated(key, keep=False)]
    if len(duplicated):
        first = duplicated.iloc[0]
        same = duplicated[(duplicated[key] == first[key]).all(axis=1)]
        places = ", ".join(f"{Path(s).name} row {r}" for s, r in zip(same["source"], same["row"]))
        raise DataError(first["source"], f"one lesion described twice ({places}): {first['patient_id']} "
                                         f"{first['side']} {first['view']} {first['abnormality_type']} "
                                         f"{first['abnormality_id']}")


def read_case_descriptions(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Several case tables (mass and calc, Training and Test) as one normalised table; together not empty."""
    paths = list(paths)
    table = pd.concat([read_case_description(path) for path in paths], ignore_index=True)
    if table.empty:
        raise DataError(name_list(paths) or None, "the case-description CSVs hold no rows")
    _check_unique(table)
    return table


def case_description_paths(directory: str | Path) -> list[Path]:
    """The four published case tables' paths in ``directory``, in :data:`CASE_DESCRIPTION_FILES` order."""
    return [Path(directory) / name for name in CASE_DESCRIPTION_FILES.values()]


# ---------------------------------------------------------------- files on disk


def index_subjects(root: str | Path) -> dict[str, Path]:
    """SubjectID -> folder, for the subject folders in ``root`` and ``root/CBIS-DDSM`` (both layouts)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "CBIS-DDSM image folder not found; download the DICOMs from TCIA "
                              "(NBIA Data Retriever) into it")
    found: dict[str, Path] = {}
    for parent in (root, root / "CBIS-DDSM"):
        if not parent.is_dir():
            continue
        for folder in sorted(parent.iterdir()):
            if not folder.is_dir() or parse_subject(folder.name) is None:
                continue
            if folder.name in found:
                raise DataError(folder, f"subject folder also at {found[folder.name]}: keep one copy")
            found[folder.name] = folder
    return found


def subject_dicoms(folder: Path) -> list[Path]:
    """Every ``.dcm`` file below a subject folder, sorted."""
    return sorted(path for path in folder.rglob("*") if path.suffix.lower() == ".dcm" and path.is_file())


def _missing(root: Path, row: Mapping, column: str, subject: str) -> DataError:
    return DataError(Path(root) / "CBIS-DDSM" / subject,
                     f"no DICOM for {Path(row['source']).name} row {row['row']} ({column} "
                     f"{row[_PATH_COLUMNS[column]]!r}): neither {root}/CBIS-DDSM/{subject} nor {root}/{subject} "
                     f"holds a .dcm file; download CBIS-DDSM from TCIA (NBIA Data Retriever) into {root}")


def _subject_files(root: Path, subjects: Mapping[str, Path], row: Mapping, column: str) -> list[Path]:
    name = path_subject(row[_PATH_COLUMNS[column]])
    files = subject_dicoms(subjects[name]) if name in subjects else []
    if not files:
        raise _missing(root, row, column, name)
    return files


def _in_series(files: Sequence[Path], series: str) -> list[Path]:
    return [path for path in files if any(series.lower() in part.lower() for part in path.parent.parts[-2:])]


def _full_image(root: Path, subjects: Mapping[str, Path], row: Mapping) -> Path:
    files = _subject_files(root, subjects, row, "image file path")
    if len(files) > 1:
        files = _in_series(files, FULL_MAMMOGRAM) or files
    if len(files) != 1:
        raise DataError(files[0].parent, f"{len(files)} DICOM files for one full mammogram "
                                         f"({name_list(str(f) for f in files)}); expected one")
    return files[0]


def _mask_and_crop(root: Path, subjects: Mapping[str, Path], row: Mapping,
                   image_shape: tuple[int, int]) -> tuple[Path, Path | None]:
    """The ROI mask and the crop of a row's lesion, whichever column names which.

    The mask is the file of the image's size; when none has it (published masks
    that differ from their image), the largest file, whose size
    :func:`lesion_box` then reports.
    """
    candidates = sorted(set(_subject_files(root, subjects, row, "ROI mask file path"))
                        | set(_subject_files(root, subjects, row, "cropped image file path")))
    shapes = {path: dicom_shape(path) for path in candidates}
    masks = [path for path in candidates if shapes[path] == image_shape]
    if len(masks) > 1:
        masks = _in_series(masks, ROI_MASK) or masks
    if not masks:
        masks = [max(candidates, key=lambda path: shapes[path][0] * shapes[path][1])]
    if len(masks) > 1:
        raise DataError(masks[0].parent, f"{len(masks)} candidate ROI masks of the image's size "
                                         f"({name_list(str(m) for m in masks)}); cannot tell mask from crop")
    crops = [path for path in candidates if path != masks[0]]
    if len(crops) > 1:
        crops = _in_series(crops, CROPPED) or crops
    if len(crops) > 1:
        raise DataError(crops[0].parent, f"{len(crops)} candidate crops ({name_list(str(c) for c in crops)})")
    return masks[0], (crops[0] if crops else None)


def resolve_files(table: pd.DataFrame, root: str | Path) -> pd.DataFrame:
    """``table`` with the DICOM files on disk: ``image_file``, ``roi_mask_file``, ``crop_file`` ("" when absent),
    ``image_rows``, ``image_columns``; the mask is told from the crop by size, whichever column named it."""
    root = Path(root)
    subjects = index_subjects(root)
    resolved = []
    for row in table.to_dict("records"):
        image = _full_image(root, subjects, row)
        shape = dicom_shape(image)
        mask, crop = _mask_and_crop(root, subjects, row, shape)
        resolved.append({"image_file": str(image), "roi_mask_file": str(mask), "crop_file": str(crop or ""),
                         "image_rows": shape[0], "image_columns": shape[1]})
    return pd.concat([table.reset_index(drop=True), pd.DataFrame(resolved, index=range(len(table)))], axis=1)


# ---------------------------------------------------------------- lesion boxes


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Half-open bounding box ``(x1, y1, x2, y2)`` of a mask's nonzero pixels (x = column); None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    columns = np.flatnonzero(mask.any(axis=0))
    return int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1


# CBIS-DDSM has a few such masks: a run may drop their lesions, and says so in its log.
_EXCLUDE_HINT = "set mammo_registration.pairs.exclude_bad_masks: true to drop such lesions"


def lesion_box(mask_file: str | Path, image_shape: tuple[int, int],
               image_file: str | Path | None = None) -> tuple[int, int, int, int]:
    """The box of an ROI mask DICOM whose image is ``image_shape``; an empty or misfitting mask is a DataError."""
    mask, _ = read_mammogram(mask_file)
    image = f" ({image_file})" if image_file else ""
    if mask.shape != tuple(image_shape):
        raise DataError(mask_file, f"ROI mask is {mask.shape[0]} x {mask.shape[1]} but its mammogram{image} is "
                                   f"{image_shape[0]} x {image_shape[1]} (masks are not resized); {_EXCLUDE_HINT}")
    box = mask_box(mask)
    if box is None:
        raise DataError(mask_file, f"ROI mask is empty (no nonzero pixel); {_EXCLUDE_HINT}")
    return box


def with_lesion_boxes(resolved: pd.DataFrame, excluded: list[str] | None = None) -> pd.DataFrame:
    """A :func:`resolve_files` table with each lesion's box (``box_x1``, ``box_y1``, ``box_x2``, ``box_y2``).

    An empty or misfitting mask is a DataError; with an ``excluded`` list, its
    message is appended there and the lesion dropped instead (CBIS-DDSM has a
    few such masks: a run may exclude them, and must say so).
    """
    kept, boxes = [], []
    for index, row in resolved.iterrows():
        try:
            boxes.append(lesion_box(row["roi_mask_file"], (row["image_rows"], row["image_columns"]),
                                    row["image_file"]))
        except DataError as exc:
            if excluded is None:
                raise
            excluded.append(str(exc))
            continue
        kept.append(index)
    frame = pd.DataFrame(boxes, columns=["box_x1", "box_y1", "box_x2", "box_y2"], index=kept)
    return pd.concat([resolved.loc[kept], frame], axis=1).reset_index(drop=True)


# ---------------------------------------------------------------- CC/MLO pairs


def _same_id_type_pathology(cc: pd.DataFrame, mlo: pd.DataFrame) -> list[tuple[int, int]]:
    key = ["abnormality_id", "abnormality_type", "pathology"]
    merged = cc.reset_index().merge(mlo.reset_index(), on=key, suffixes=("_cc", "_mlo"))
    return list(zip(merged["index_cc"], merged["index_mlo"]))


def _unique_type_pathology(cc: pd.DataFrame, mlo: pd.DataFrame) -> list[tuple[int, int]]:
    pairs = []
    for _, group in cc.groupby(["abnormality_type", "pathology"]):
        first = group.iloc[0]
        partners = mlo[(mlo["abnormality_type"] == first["abnormality_type"])
                       & (mlo["pathology"] == first["pathology"])]
        if len(group) == 1 and len(partners) == 1:
            pairs.append((group.index[0], partners.index[0]))
    return pairs


#: Cross-view lesion correspondence rules (heuristics: CBIS-DDSM records none).
PAIRING_RULES = {
    "abnormality_id": _same_id_type_pathology,  # same abnormality id, type and pathology
    "type_pathology": _unique_type_pathology,  # the one lesion of that type and pathology on each view
}
_PAIR_KEY = ["split", "patient_id", "side"]
_SHARED = _PAIR_KEY + ["abnormality_type", "pathology"]


@dataclass(frozen=True)
class ViewPairs:
    """CC/MLO lesion pairs (one row each, columns ``pair``, the shared keys, then ``cc_*`` and ``mlo_*``) and the
    CC and MLO lesions left without a partner."""

    pairs: pd.DataFrame
    unpaired_cc: int
    unpaired_mlo: int
    rule: str


def _pair_row(cc: pd.Series, mlo: pd.Series) -> dict:
    row = {"pair": f"{cc['split']}_{cc['patient_id']}_{cc['side']}_{cc['abnormality_type']}_{cc['abnormality_id']}"}
    row.update({key: cc[key] for key in _SHARED})
    row.update({f"cc_{key}": value for key, value in cc.items() if key not in _SHARED})
    row.update({f"mlo_{key}": value for key, value in mlo.items() if key not in _SHARED})
    return row


def pair_views(table: pd.DataFrame, rule: str = "abnormality_id") -> ViewPairs:
    """CC and MLO lesions of the same patient, side and split, matched by ``rule`` (see :data:`PAIRING_RULES`).

    A CC lesion without an MLO partner is skipped and counted; no pair at all is a DataError naming the tables.
    """
    if rule not in PAIRING_RULES:
        raise ConfigError(f"pairing rule {rule!r} is unknown; choose one of {', '.join(PAIRING_RULES)}")
    match = PAIRING_RULES[rule]
    table = table.reset_index(drop=True)
    rows, paired_cc, paired_mlo = [], set(), set()
    for _, group in table.groupby(_PAIR_KEY, sort=True):
        cc, mlo = group[group["view"] == "CC"], group[group["view"] == "MLO"]
        for cc_index, mlo_index in match(cc, mlo):
            rows.append(_pair_row(table.loc[cc_index], table.loc[mlo_index]))
            paired_cc.add(cc_index)
            paired_mlo.add(mlo_index)
    n_cc, n_mlo = int((table["view"] == "CC").sum()), int((table["view"] == "MLO").sum())
    if not rows:
        sources = sorted(set(table["source"])) if "source" in table else []
        raise DataError(name_list(sources) or None,
                        f"no CC lesion has an MLO partner under pairing rule {rule!r} ({n_cc} CC, {n_mlo} MLO "
                        "lesions): nothing to register")
    pairs = pd.DataFrame(rows).sort_values("pair", kind="stable").reset_index(drop=True)
    return ViewPairs(pairs, n_cc - len(paired_cc), n_mlo - len(paired_mlo), rule)


# ---------------------------------------------------------------- writing (the stand-in)

LAYOUTS = ("nbia", "legacy", "csv")
SERIES = (FULL_MAMMOGRAM, ROI_MASK, CROPPED)


def _uid_digits(uid: str) -> str:
    """Five digits from a UID, for the NBIA folder names (here: its last five digits)."""
    digits = re.sub(r"\D", "", uid)
    return digits[-5:].rjust(5, "0")


def dicom_path_for(layout: str, subject: str, series: str, *, study_uid: str, series_uid: str,
                   date: str = "07-20-2016", instance: int = 1) -> str:
    """A DICOM's relative path (``/``-separated) in one layout.

    ``nbia``: the current retriever's ``CBIS-DDSM/<SubjectID>/<date>-DDSM-<n>/1.000000-<series>-<n>/1-<i>.dcm``;
    ``legacy``: ``<SubjectID>/<StudyUID>/<SeriesUID>/1-<i>.dcm``; ``csv``: the case tables' form,
    ``<SubjectID>/<StudyUID>/<SeriesUID>/00000<i-1>.dcm``.
    """
    if series not in SERIES:
        raise ValueError(f"series must be one of {SERIES}, got {series!r}")
    if parse_subject(subject) is None:
        raise ValueError(f"{subject!r} is not a CBIS-DDSM SubjectID")
    if layout == "nbia":
        return (f"CBIS-DDSM/{subject}/{date}-DDSM-{_uid_digits(study_uid)}/"
                f"1.000000-{series}-{_uid_digits(series_uid)}/1-{instance}.dcm")
    if layout == "legacy":
        return f"{subject}/{study_uid}/{series_uid}/1-{instance}.dcm"
    if layout == "csv":
        return f"{subject}/{study_uid}/{series_uid}/{instance - 1:06d}.dcm"
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


_WRITE_KEYS = {"patient_id": "patient_id", "left or right breast": "side", "image view": "view",
               "abnormality id": "abnormality_id", "abnormality type": "abnormality_type",
               "assessment": "assessment", "pathology": "pathology", "subtlety": "subtlety",
               "mass shape": "mass_shape", "mass margins": "mass_margins", "calc type": "calc_type",
               "calc distribution": "calc_distribution", **_PATH_COLUMNS}


def write_case_descriptions(rows: Iterable[Mapping], path: str | Path, kind: str, *,
                            newline_after: Sequence[str] = ("roi_mask_path",)) -> None:
    """Write a ``kind`` case table with the published header and quirks, atomically.

    ``rows`` are mappings with the normalised keys (:data:`TABLE_COLUMNS`; ``mass_shape``, ``mass_margins``,
    ``calc_type``, ``calc_distribution`` optional). The path columns in ``newline_after`` end with an embedded
    newline, so they are written quoted, as published; a swap of crop and mask is the caller's to make.
    """
    header = published_header(kind)
    keys = {**_WRITE_KEYS, _DENSITY[kind]: "breast_density"}
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        values = []
        for column in header:
            key = keys[column]
            value = "" if row.get(key) is None else str(row.get(key))
            values.append(value + "\n" if key in newline_after else value)
        writer.writerow(values)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8", newline="")
