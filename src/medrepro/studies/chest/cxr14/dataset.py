"""NIH ChestX-ray14: the label table, the image folder and the published archives.

Layout under the dataset root::

    Data_Entry_2017.csv
    images/00000001_000.png      (<8-digit patient>_<3-digit follow-up>.png)

Images are 1024 x 1024 8-bit grey PNGs; a few carry extra channels, of which
channel 0 is the radiograph. The label table's header has 9 names but 11 CSV
fields, because two of them contain a comma inside brackets
(``OriginalImage[Width,Height]``); pandas therefore sees the columns
``OriginalImage[Width``, ``Height]``, ``OriginalImagePixelSpacing[x`` and
``y]``, which are kept as they are. ``Finding Labels`` holds
``|``-separated finding names, or ``No Finding``.

The reader refuses anything a downstream step would otherwise silently
misread: duplicated or misnamed images, empty label strings and labels
outside the 14 findings (a typo would otherwise just count as "absent").
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from medrepro.errors import ConfigError, DataError, name_list
from medrepro.data.io.png import grey_array, normalise_grey, open_image
from medrepro.data.sourcing import Dataset, register

LABEL_TABLE = "Data_Entry_2017.csv"
IMAGES_DIR = "images"
HEADER = (
    "Image Index",
    "Finding Labels",
    "Follow-up #",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
    "OriginalImage[Width",
    "Height]",
    "OriginalImagePixelSpacing[x",
    "y]",
)
REQUIRED_COLUMNS = ("Image Index", "Finding Labels", "Patient ID")
NO_FINDING = "No Finding"
LABEL_SEPARATOR = "|"
FINDINGS = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Effusion",
    "Emphysema",
    "Fibrosis",
    "Hernia",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pleural_Thickening",
    "Pneumonia",
    "Pneumothorax",
)
IMAGE_NAME_PATTERN = r"\d{8}_\d{3}\.png"

BOX_URL = "https://nihcc.app.box.com/v/ChestXray-NIHCC"
#: MD5 digests the NIH publishes for the twelve image archives.
ARCHIVE_MD5: dict[str, str] = {
    "images_001.tar.gz": "fe8ed0a6961412fddcbb3603c11b3698",
    "images_002.tar.gz": "ab07a2d7cbe6f65ddd97b4ed7bde10bf",
    "images_003.tar.gz": "2301d03bde4c246388bad3876965d574",
    "images_004.tar.gz": "9f1b7f5aae01b13f4bc8e2c44a4b8ef6",
    "images_005.tar.gz": "1861f3cd0ef7734df8104f2b0309023b",
    "images_006.tar.gz": "456b53a8b351afd92a35bc41444c58c8",
    "images_007.tar.gz": "1075121ea20a137b87f290d6a4a5965e",
    "images_008.tar.gz": "b61f34cec3aa69f295fbb593cbd9d443",
    "images_009.tar.gz": "442a3caa61ae9b64e61c561294d1e183",
    "images_010.tar.gz": "09ec81c4c31e32858ad8cf965c494b74",
    "images_011.tar.gz": "499aefc67207a5a97692424cf5dbeed5",
    "images_012.tar.gz": "dc9fda1757c2de0032b63347a7d2895c",
}

PUBLISHED_DIR = Path(__file__).resolve().parents[5] / "resources" / "published"
PUBLISHED_TABLE = "nih-cxr14-data-entry-2017-v2020.csv.gz"
PUBLISHED_RCA_DICE = "nih-cxr14-rca-dice-scores.csv"

_CHUNK = 1 << 20
_MULTICHANNEL_MODES = ("RGB", "RGBA", "RGBX", "LA", "CMYK", "YCbCr")


# ---------------------------------------------------------------- published reference files


def published_path(name: str) -> Path:
    """A file of the repository's ``resources/published/`` (real tables kept beside the code)."""
    path = PUBLISHED_DIR / name
    if not path.is_file():
        raise DataError(
            path,
            f"published reference file missing; resources/published/ should hold it (see {PUBLISHED_DIR}/README.md)",
        )
    return path


# ---------------------------------------------------------------- label table


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(path, "label table not found")
    try:
        table = pd.read_csv(path, dtype={"Image Index": str, "Finding Labels": str}, compression="infer")
    except (OSError, ValueError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read the label table as CSV: {exc}") from exc
    # the 2017 release ends every line with a comma: an unnamed, empty last column
    empty_extra = [c for c in table.columns if str(c).startswith("Unnamed:") and table[c].isna().all()]
    return table.drop(columns=empty_extra)


def _check_columns(table: pd.DataFrame, path: Path) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(
            path,
            f"missing columns {', '.join(missing)} (found {', '.join(map(str, table.columns))}); "
            f"expected the {LABEL_TABLE} header {','.join(HEADER)}",
        )


def _check_rows(table: pd.DataFrame, path: Path) -> None:
    names, labels = table["Image Index"], table["Finding Labels"]
    empty = names[labels.isna() | (labels.fillna("").str.strip() == "")]
    if len(empty):
        raise DataError(path, f"{len(empty)} rows have empty Finding Labels: {name_list(empty.fillna('<no name>'))}")
    bad = names[~names.fillna("").str.fullmatch(IMAGE_NAME_PATTERN)]
    if len(bad):
        raise DataError(
            path, f"{len(bad)} image names are not NNNNNNNN_NNN.png: {name_list(bad.fillna('<empty>').map(repr))}"
        )
    repeated = names[names.duplicated()].unique()
    if len(repeated):
        raise DataError(path, f"{len(repeated)} image names occur more than once: {name_list(repeated)}")
    if not pd.api.types.is_integer_dtype(table["Patient ID"]):
        raise DataError(path, "Patient ID holds values that are not whole numbers")


def _check_labels(labels: pd.Series, path: Path) -> None:
    parts = labels.str.split(LABEL_SEPARATOR, regex=False).explode()
    unknown = sorted(set(parts.unique()) - set(FINDINGS) - {NO_FINDING})
    if unknown:
        raise DataError(
            path,
            f"unknown finding labels {name_list(map(repr, unknown), 10)}; "
            f"expected {NO_FINDING!r} or |-separated names from {', '.join(FINDINGS)}",
        )
    mixed = labels[labels.str.contains(NO_FINDING, regex=False) & (labels != NO_FINDING)]
    if len(mixed):
        raise DataError(path, f"{NO_FINDING!r} combined with findings: {name_list(mixed.unique().tolist())}")


def read_label_table(path: str | Path) -> pd.DataFrame:
    """``Data_Entry_2017.csv`` (or a ``.csv.gz`` copy) as a DataFrame in the file's row order.

    Raises DataError naming the file for missing columns, empty label
    strings, misnamed or duplicated images and unknown labels.
    """
    path = Path(path)
    table = _read_csv(path)
    _check_columns(table, path)
    _check_rows(table, path)
    _check_labels(table["Finding Labels"], path)
    return table.reset_index(drop=True)


def findings(label_string: str) -> frozenset[str]:
    """The findings of one ``Finding Labels`` entry; ``No Finding`` gives the empty set."""
    parts = {part.strip() for part in label_string.split(LABEL_SEPARATOR)}
    return frozenset(parts - {"", NO_FINDING})


def has_finding(labels: pd.Series, name: str) -> pd.Series:
    """Boolean Series: does each label string carry ``name`` as a whole label (not a substring)?"""
    if name not in FINDINGS and name != NO_FINDING:
        raise ConfigError(
            f"unknown ChestX-ray14 finding {name!r}; expected {NO_FINDING!r} or one of {', '.join(FINDINGS)}"
        )
    sep = re.escape(LABEL_SEPARATOR)
    pattern = f"(?:^|{sep}){re.escape(name)}(?:{sep}|$)"
    return labels.str.contains(pattern, regex=True, na=False).astype(bool)


# ---------------------------------------------------------------- images


def list_image_files(images_dir: str | Path) -> set[str]:
    """Names of the PNG files directly in ``images_dir`` (hidden temporary files excluded)."""
    with os.scandir(images_dir) as entries:
        return {e.name for e in entries if e.name.endswith(".png") and not e.name.startswith(".") and e.is_file()}


def check_images(table: pd.DataFrame, images_dir: str | Path, table_path: str | Path) -> int:
    """Every table entry has its PNG and every PNG has its entry; returns the number of images."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DataError(images_dir, f"image folder not found (it should hold the images listed in {table_path})")
    present = list_image_files(images_dir)
    listed = table["Image Index"]
    missing = listed[~listed.isin(present)]
    if len(missing):
        raise DataError(
            images_dir,
            f"{len(missing)} of the {len(listed)} images listed in {table_path} are missing: {name_list(missing)}",
        )
    unknown = sorted(present - set(listed))
    if unknown:
        raise DataError(images_dir, f"{len(unknown)} image files are not listed in {table_path}: {name_list(unknown)}")
    return len(listed)


def read_cxr14_image(path: str | Path) -> np.ndarray:
    """A ChestX-ray14 radiograph as a 2-D float32 array in 0..1 (channel 0 of multichannel files)."""
    path = Path(path)
    img = open_image(path)
    if img.mode in _MULTICHANNEL_MODES:
        array = np.asarray(img)[..., 0].copy()  # the extra channels of the few RGBA files are not grey copies
    else:
        array = grey_array(img, path)
    if array.ndim != 2:
        raise DataError(path, f"expected a 2-D radiograph, got shape {array.shape}")
    return normalise_grey(array, path)


# ---------------------------------------------------------------- obtaining the real data


def instructions(raw_root: str | Path) -> str:
    """What to download, from where, and where to put it."""
    raw_root = Path(raw_root)
    digests = ", ".join(f"{name} {md5}" for name, md5 in ARCHIVE_MD5.items())
    return (
        f"Download NIH ChestX-ray14 from {BOX_URL} (public, no login, about 42 GB): the archives "
        f"images_001.tar.gz .. images_012.tar.gz (published MD5s: {digests}; check each with "
        f"medrepro.studies.chest.cxr14.dataset.verify_archive_md5) and {LABEL_TABLE}. Extract every archive into {raw_root}/ "
        f"(each unpacks into an {IMAGES_DIR}/ folder) so that {raw_root / IMAGES_DIR}/ holds all 112,120 PNGs "
        f"(00000001_000.png ...), and put {LABEL_TABLE} in {raw_root}/."
    )


def check_layout(raw_root: str | Path) -> dict:
    """Check a user's copy is complete; DataError says what to fetch and where. Returns counts."""
    raw_root = Path(raw_root)
    table_path, images_dir = raw_root / LABEL_TABLE, raw_root / IMAGES_DIR
    if not table_path.is_file():
        raise DataError(table_path, "label table not found. " + instructions(raw_root))
    if not images_dir.is_dir() or not list_image_files(images_dir):
        raise DataError(images_dir, "no ChestX-ray14 images (*.png). " + instructions(raw_root))
    table = read_label_table(table_path)
    try:
        n_images = check_images(table, images_dir, table_path)
    except DataError as exc:
        raise DataError(exc.path, f"{exc.problem}. {instructions(raw_root)}") from exc
    return {
        "images": n_images,
        "patients": int(table["Patient ID"].nunique()),
        "no_finding": int(has_finding(table["Finding Labels"], NO_FINDING).sum()),
    }


def verify_archive_md5(path: str | Path) -> str:
    """Check an image archive against its published MD5 (:data:`ARCHIVE_MD5`); returns the digest."""
    path = Path(path)
    if path.name not in ARCHIVE_MD5:
        raise DataError(path, f"not a ChestX-ray14 image archive name; expected one of {name_list(ARCHIVE_MD5, 12)}")
    if not path.is_file():
        raise DataError(path, "archive not found")
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    expected, actual = ARCHIVE_MD5[path.name].lower(), digest.hexdigest()
    if actual != expected:
        raise DataError(
            path,
            f"MD5 mismatch: expected {expected}, got {actual}; the download is damaged, fetch it again from {BOX_URL}",
        )
    return actual


NAME = "ChestX-ray14"
DATASET = register(Dataset(NAME, (), check_layout))
