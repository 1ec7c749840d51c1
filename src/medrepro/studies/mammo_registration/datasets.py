"""CBIS-DDSM for the kernel's sourcing: what to download, from where, where it goes, and a download.

The collection is public on TCIA (no login; CC BY 3.0). Two parts:

* the DICOMs (about 164 GB): the NBIA Data Retriever with the collection's
  manifest writes ``CBIS-DDSM/<SubjectID>/<date>-DDSM-<n>/1.000000-<series>-<n>/1-1.dcm``;
  :func:`download` uses the NBIA REST API instead and writes the older layout
  ``<SubjectID>/<StudyUID>/<SeriesUID>/1-1.dcm``. Both go directly under the
  raw directory and both are read (:mod:`.readers.cbis_ddsm`).
* the four case-description CSVs, at the top of the raw directory.

:func:`check_layout` says exactly which part is missing. It is registered as
``CBIS-DDSM`` with :func:`medrepro.data.sourcing.register`.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from medrepro.data import sourcing
from medrepro.data.atomic import atomic_dir
from medrepro.errors import DataError, name_list
from medrepro.data.sourcing import Dataset, Source, instructions, register
from medrepro.studies.mammo_registration.readers.cbis_ddsm import (
    CASE_DESCRIPTION_FILES, case_description_paths, index_subjects, parse_subject, path_subject,
    read_case_descriptions, subject_dicoms)

log = logging.getLogger(__name__)

NAME = "CBIS-DDSM"
COLLECTION_PAGE = "https://www.cancerimagingarchive.net/collection/cbis-ddsm/"
RETRIEVER_MANIFEST = "https://www.cancerimagingarchive.net/wp-content/uploads/CBIS-DDSM-All-doiJNLP-zzWs5zfZ.tcia"
NBIA_API = "https://services.cancerimagingarchive.net/nbia-api/services/v1"
ACCESS = "public on TCIA, no login; licence CC BY 3.0"

#: Where each case table is published: TCIA's current site, then the retired wiki's attachment.
CASE_TABLE_URLS: dict[str, tuple[str, ...]] = {
    name: (f"https://www.cancerimagingarchive.net/wp-content/uploads/{name}",
           f"https://wiki.cancerimagingarchive.net/download/attachments/22516629/{name}?version=1"
           f"&modificationDate={modified}&api=v2")
    for name, modified in (("mass_case_description_train_set.csv", "1506796355038"),
                           ("mass_case_description_test_set.csv", "1506796343175"),
                           ("calc_case_description_train_set.csv", "1506796349666"),
                           ("calc_case_description_test_set.csv", "1506796343686"))
}

_DICOMS = Source(
    what="CBIS-DDSM DICOMs (full mammograms, ROI masks and lesion crops, about 164 GB)",
    urls=(COLLECTION_PAGE, RETRIEVER_MANIFEST),
    access=ACCESS + "; open the .tcia manifest with the NBIA Data Retriever and choose the raw folder as destination",
    automatic=True,
    put_under=".",
    expect="CBIS-DDSM/<SubjectID>/<MM-DD-YYYY>-DDSM-<n>/1.000000-<series>-<n>/1-1.dcm (the retriever's layout) "
           "or <SubjectID>/<StudyUID>/<SeriesUID>/1-1.dcm, one subject folder per SubjectID the case tables name",
)


def _case_table_source(name: str) -> Source:
    return Source(what=f"case-description table {name}", urls=(*CASE_TABLE_URLS[name][:1], COLLECTION_PAGE),
                  access=ACCESS, automatic=True, put_under=".", expect=name)


#: Part 0: the DICOMs; parts 1..4: the case tables in :data:`CASE_DESCRIPTION_FILES` order.
SOURCES: tuple[Source, ...] = (_DICOMS, *(_case_table_source(name) for name in CASE_DESCRIPTION_FILES.values()))
_DICOM_PART = (0,)


# ---------------------------------------------------------------- layout check


def _check_case_tables(raw_root: Path) -> pd.DataFrame:
    """The four case tables, read; a DataError naming the missing ones and where to get them."""
    paths = case_description_paths(raw_root)
    missing = [index for index, path in enumerate(paths) if not path.is_file()]
    if missing:
        no_dicoms = not raw_root.is_dir() or not index_subjects(raw_root)
        parts = (_DICOM_PART if no_dicoms else ()) + tuple(index + 1 for index in missing)
        raise DataError(paths[missing[0]], f"CBIS-DDSM case-description CSV(s) missing: "
                                           f"{name_list(paths[i].name for i in missing)}. "
                        + instructions(NAME, raw_root, parts))
    return read_case_descriptions(paths)


def _named_subjects(table: pd.DataFrame) -> list[str]:
    """Every SubjectID the case tables point at (full mammograms and lesion series), sorted."""
    columns = ("image_path", "roi_mask_path", "crop_path")
    return sorted({path_subject(path) for column in columns for path in table[column]})


def check_layout(raw_root: str | Path) -> dict:
    """Check the case tables and every DICOM folder they name are in place, in either on-disk layout.

    Returns counts: ``images`` (full mammograms), ``roi_masks`` (abnormalities,
    one ROI mask each), ``cases`` (patients of either split). A missing part is
    a DataError that says what to download, from where, and where to put it.
    """
    raw_root = Path(raw_root)
    if not raw_root.is_dir():
        raise DataError(raw_root, "CBIS-DDSM raw folder not found. " + instructions(NAME, raw_root))
    table = _check_case_tables(raw_root)
    subjects = index_subjects(raw_root)
    named = _named_subjects(table)
    missing = [name for name in named if name not in subjects or not subject_dicoms(subjects[name])]
    if missing:
        raise DataError(raw_root, f"no DICOM folder for {len(missing)} of the {len(named)} subjects the case tables "
                                  f"name: {name_list(missing)}. "
                        + instructions(NAME, raw_root, _DICOM_PART))
    images = {path_subject(path) for path in table["image_path"]}
    cases = set(zip(table["split"], table["patient_id"]))
    return {"images": len(images), "roi_masks": len(table), "cases": len(cases)}


# ---------------------------------------------------------------- download through the NBIA REST API

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


@dataclass(frozen=True)
class Series:
    """One DICOM series as the NBIA API lists it; its legacy-layout folder is ``subject/study_uid/series_uid``."""

    subject: str
    study_uid: str
    series_uid: str

    @property
    def folder(self) -> str:
        return f"{self.subject}/{self.study_uid}/{self.series_uid}"


def series_list_url(api: str = NBIA_API, collection: str = NAME) -> str:
    return f"{api}/getSeries?" + urllib.parse.urlencode({"Collection": collection})


def series_image_url(series_uid: str, api: str = NBIA_API) -> str:
    return f"{api}/getImage?" + urllib.parse.urlencode({"SeriesInstanceUID": series_uid})


def _series_entry(path: Path, number: int, entry) -> Series:
    """One checked entry; its values become folder names, so only SubjectIDs and numeric UIDs pass."""
    if not isinstance(entry, dict):
        raise DataError(path, f"series entry {number} is not an object")
    values = {key: entry.get(key) for key in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID")}
    if not isinstance(values["PatientID"], str) or parse_subject(values["PatientID"]) is None:
        raise DataError(path, f"series entry {number}: PatientID {values['PatientID']!r} is not a CBIS-DDSM "
                              "SubjectID ({Mass|Calc}-{Training|Test}_P_<n>_{LEFT|RIGHT}_{CC|MLO}[_<n>])")
    for key in ("StudyInstanceUID", "SeriesInstanceUID"):
        if not isinstance(values[key], str) or not _UID.match(values[key]) or len(values[key]) > 64:
            raise DataError(path, f"series entry {number}: {key} {values[key]!r} is not a DICOM UID")
    return Series(values["PatientID"], values["StudyInstanceUID"], values["SeriesInstanceUID"])


def read_series_list(path: str | Path) -> list[Series]:
    """The series of a ``getSeries`` answer (JSON list), checked, sorted by folder, duplicates dropped."""
    path = Path(path)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"not a readable NBIA getSeries answer (JSON): {exc}") from exc
    if not isinstance(entries, list) or not entries:
        raise DataError(path, "the NBIA getSeries answer lists no series")
    return sorted({_series_entry(path, number, entry) for number, entry in enumerate(entries, start=1)},
                  key=lambda series: series.folder)


def _fetch_first(urls: tuple[str, ...], target: Path) -> None:
    """Download the first of ``urls`` that answers; a DataError listing every failure otherwise."""
    errors = []
    for url in urls:
        try:
            sourcing.download(url, target)
            return
        except DataError as exc:
            errors.append(str(exc))
    raise DataError(target, "all downloads failed (" + "; ".join(errors) + ")")


def download_case_tables(raw_root: Path) -> None:
    """Fetch the case tables that are not yet in ``raw_root``."""
    for part, path in enumerate(case_description_paths(raw_root), start=1):
        if path.is_file():
            continue
        try:
            _fetch_first(CASE_TABLE_URLS[path.name], path)
        except DataError as exc:
            raise DataError(path, f"{exc.problem}. " + instructions(NAME, raw_root, (part,))) from exc


def download_series(series: Series, raw_root: Path, downloads: Path, api: str = NBIA_API) -> Path:
    """Fetch one series' zip and unpack it into ``<raw_root>/<SubjectID>/<StudyUID>/<SeriesUID>/``, whole or not at all.

    A series folder that already holds a DICOM is kept (a resumed download).
    """
    folder = raw_root / series.folder
    if folder.is_dir() and subject_dicoms(folder):
        return folder
    archive = downloads / f"{series.series_uid}.zip"
    sourcing.download(series_image_url(series.series_uid, api), archive)
    try:
        with atomic_dir(folder) as tmp:
            sourcing.safe_extract(archive, tmp)
            if not subject_dicoms(tmp):
                raise DataError(archive, f"the NBIA archive of series {series.series_uid} ({series.subject}) "
                                         "holds no .dcm file")
    finally:
        archive.unlink(missing_ok=True)
    return folder


def download(raw_root: str | Path, api: str = NBIA_API) -> Path:
    """Fetch CBIS-DDSM into ``raw_root``: the case tables, then every series the NBIA API lists (legacy layout).

    Resumable: tables and series folders already in place are kept. Temporary
    files live in ``<raw_root>/.downloads`` (hidden, so never pinned) and are
    removed at the end.
    """
    raw_root = Path(raw_root)
    downloads = raw_root / ".downloads"
    download_case_tables(raw_root)
    listing = downloads / "series.json"
    try:
        sourcing.download(series_list_url(api), listing)
    except DataError as exc:
        raise DataError(exc.path, f"{exc.problem}. " + instructions(NAME, raw_root, _DICOM_PART)) from exc
    series_list = read_series_list(listing)
    for number, series in enumerate(series_list, start=1):
        download_series(series, raw_root, downloads, api)
        if number % 100 == 0 or number == len(series_list):
            log.info("CBIS-DDSM: %d of %d series in %s", number, len(series_list), raw_root)
    shutil.rmtree(downloads, ignore_errors=True)
    return raw_root


CBIS_DDSM = register(Dataset(NAME, SOURCES, check_layout, download))
