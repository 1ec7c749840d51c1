"""Readers (and the stand-in writers) of the study's native formats: INbreast as published (:mod:`.inbreast`) and a
plain directory of mammograms with binary masks (:mod:`.masks_dir`).

Both give one :class:`CalcificationImage` per mammogram: its stored pixels, pixel size, acquisition (a digital
detector or digitised film) and binary calcification mask, with the files it came from. The DICOM tags both read
beyond the pixels (:func:`dicom_spacing_and_acquisition`) live here too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from medrepro.errors import DataError

DIGITAL = "digital"
FILM = "film"
ACQUISITIONS = (DIGITAL, FILM)
#: The DICOM ConversionType of a digitised film (PS3.3 C.8.6.1); INbreast's detector images carry none.
DIGITISED_FILM_CONVERSION = "DF"
#: Where a DICOM file's pixel size is looked for, in order: the calibrated size in the patient, then the detector's.
SPACING_TAGS = ("PixelSpacing", "ImagerPixelSpacing")


@dataclass(frozen=True, eq=False)
class CalcificationImage:
    """One mammogram and its calcification mask, as the readers return it.

    * ``name``: the image's name in its dataset (INbreast's File Name, or the file stem);
    * ``image``: (rows, cols) grey values as stored (uint8 or uint16; float32 once resampled by
      :mod:`medrepro.studies.microcalc.resample`), bright = dense tissue;
    * ``max_value``: the largest value the stored bit depth holds (divide by it for 0..1);
    * ``spacing_mm``: the pixel size (row, column) in mm;
    * ``acquisition``: :data:`DIGITAL` (a detector) or :data:`FILM` (digitised film);
    * ``mask``: bool (rows, cols), True on calcification pixels;
    * ``annotated``: whether the dataset annotates the image at all (an INbreast image without an XML file has an
      empty mask because nothing was drawn on it);
    * ``laterality`` (``L``/``R``) and ``view`` (``CC``/``MLO``), "" when the source does not say;
    * ``sources``: the files read, the image first.
    """

    name: str
    image: np.ndarray
    max_value: int
    spacing_mm: tuple[float, float]
    acquisition: str
    mask: np.ndarray
    annotated: bool
    laterality: str
    view: str
    sources: tuple[Path, ...]

    @property
    def digitised(self) -> bool:
        """True for a digitised film, False for a digital detector image."""
        return self.acquisition == FILM


def check_spacing(value, path: str | Path | None, what: str) -> tuple[float, float]:
    """Two positive finite pixel sizes (row, column) in mm, or a DataError naming ``what`` and the file."""
    try:
        pair = tuple(float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise DataError(path, f"{what} {value!r} is not a pair of numbers (mm per row, mm per column)") from exc
    if len(pair) != 2 or not all(math.isfinite(v) and v > 0 for v in pair):
        raise DataError(path, f"{what} {value!r} is not two positive pixel sizes in mm (row, column)")
    return pair[0], pair[1]


def dicom_spacing_and_acquisition(path: str | Path) -> tuple[tuple[float, float] | None, str]:
    """A DICOM file's pixel size (row, column; None when neither of :data:`SPACING_TAGS` is there) and its
    acquisition: :data:`FILM` when ConversionType says digitised film (``DF``), :data:`DIGITAL` otherwise.

    Call it after :func:`medrepro.shared.dicom.read_mammogram` accepted the file; only the header is read again.
    """
    path = Path(path)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises many types on a damaged header
        raise DataError(path, f"unreadable DICOM header: {type(exc).__name__}: {exc}") from exc
    spacing = None
    for keyword in SPACING_TAGS:
        value = ds.get(keyword)
        if value is not None and str(value).strip():
            spacing = check_spacing(value, path, keyword)
            break
    conversion = str(ds.get("ConversionType", "") or "").strip().upper()
    return spacing, FILM if conversion == DIGITISED_FILM_CONVERSION else DIGITAL
