"""Greyscale mammograms as DICOM files: read with pydicom, written for the synthetic stand-ins.

Reading (:func:`read_mammogram`) returns the stored grey values as ``uint16``
with bright = dense tissue, whatever the file's depth and polarity:

* ``MONOCHROME2`` (the norm: CBIS-DDSM, INbreast) is returned as stored;
  ``MONOCHROME1`` (bright = little attenuation) is inverted as
  ``2**BitsStored - 1 - value``, so every caller sees one polarity.
* ``BitsAllocated`` 8 or 16, unsigned, one sample per pixel. Bits above
  ``BitsStored`` are ignored (pydicom masks them, as the standard says).
* Modality/VOI LUTs and rescale tags are not applied: CBIS-DDSM's Secondary
  Capture files carry none, and a study that needs them applies them itself.

Anything else (colour, signed or 32-bit pixels, a compressed transfer syntax
without an installed decoder, a truncated or non-DICOM file) is a
:class:`~medrepro.errors.DataError` naming the file and what it found.

Writing (:func:`write_mammogram`) produces a valid DICOM file (Part 10 header,
explicit VR little endian, Secondary Capture) with the tags CBIS-DDSM files
carry, its UIDs derived from a name so the same call writes the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from medrepro.data.atomic import atomic_path
from medrepro.errors import DataError

SUPPORTED_PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2")
SUPPORTED_BITS_ALLOCATED = (8, 16)
#: The SeriesDescription of CBIS-DDSM's three series kinds.
FULL_MAMMOGRAM = "full mammogram images"
ROI_MASK = "ROI mask images"
CROPPED = "cropped images"
#: Header elements every readable mammogram must have.
_REQUIRED = ("Rows", "Columns", "BitsAllocated", "BitsStored", "PhotometricInterpretation")


# ---------------------------------------------------------------- reading


def _open(path: Path, pixels: bool) -> Dataset:
    """The parsed file, or a DataError saying why it is not a DICOM file."""
    if not path.is_file():
        raise DataError(path, "DICOM file not found")
    try:
        return pydicom.dcmread(path, stop_before_pixels=not pixels)
    except InvalidDicomError as exc:
        raise DataError(path, f"not a DICOM file (no DICM prefix / file meta header): {exc}") from exc
    except Exception as exc:  # pydicom raises many types on truncated headers (EOFError, struct.error, ...)
        raise DataError(path, f"unreadable DICOM file (truncated or corrupt): {type(exc).__name__}: {exc}") from exc


def _check_header(path: Path, ds: Dataset) -> None:
    """Fail on a header this reader does not support, naming what the file holds."""
    missing = [name for name in _REQUIRED if name not in ds]
    if missing:
        raise DataError(path, f"DICOM header lacks {', '.join(missing)}: truncated, or not an image")
    photometric = str(ds.PhotometricInterpretation).strip()
    if photometric not in SUPPORTED_PHOTOMETRIC:
        raise DataError(path, f"unsupported PhotometricInterpretation {photometric!r}; "
                              f"a mammogram must be {' or '.join(SUPPORTED_PHOTOMETRIC)}")
    samples = int(ds.get("SamplesPerPixel", 1))
    if samples != 1:
        raise DataError(path, f"unsupported SamplesPerPixel {samples}; a mammogram has 1 (greyscale)")
    bits = int(ds.BitsAllocated)
    if bits not in SUPPORTED_BITS_ALLOCATED:
        raise DataError(path, f"unsupported BitsAllocated {bits}; supported: 8 or 16")
    stored = int(ds.BitsStored)
    if not 1 <= stored <= bits:
        raise DataError(path, f"BitsStored {stored} is outside 1..BitsAllocated ({bits})")
    if int(ds.get("PixelRepresentation", 0)) != 0:
        raise DataError(path, "signed pixel data (PixelRepresentation 1) is not supported; mammograms are unsigned")
    if int(ds.get("NumberOfFrames", 1) or 1) != 1:
        raise DataError(path, f"{ds.NumberOfFrames} frames; a mammogram file holds one image")


def _transfer_syntax(ds: Dataset):
    meta = getattr(ds, "file_meta", None)
    return None if meta is None else meta.get("TransferSyntaxUID")


def _decoded_pixels(path: Path, ds: Dataset) -> np.ndarray:
    if "PixelData" not in ds:
        raise DataError(path, "no pixel data: the file is truncated or not an image")
    syntax = _transfer_syntax(ds)
    if syntax is None:
        raise DataError(path, "no TransferSyntaxUID in the file meta header: truncated or not a DICOM Part 10 file")
    try:
        return np.asarray(ds.pixel_array)
    except Exception as exc:  # missing decoder, short pixel data, corrupt stream
        what = (f"compressed transfer syntax {syntax.name} ({syntax}) (no decoder installed, or corrupt data)"
                if syntax.is_compressed else "pixel data (truncated or corrupt file)")
        detail = str(exc).split(" - ")[0].strip()  # pydicom's first clause; the rest is generic advice
        raise DataError(path, f"cannot decode {what}: {detail}; replace the file with a fresh download") from exc


def read_mammogram(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """The image as ``uint16`` (rows, columns), bright = dense, and the tags that describe it.

    ``info`` holds ``rows``, ``columns``, ``bits_allocated``, ``bits_stored``,
    ``max_value`` (``2**bits_stored - 1``, for normalising), ``photometric``
    (as stored), ``inverted`` (True for MONOCHROME1), ``transfer_syntax`` and
    the identifying tags (``patient_id``, ``laterality``, ``view``,
    ``series_description``, ``study_uid``, ``series_uid``, ``sop_uid``; "" when
    absent).
    """
    path = Path(path)
    ds = _open(path, pixels=True)
    _check_header(path, ds)
    raw = _decoded_pixels(path, ds)
    shape = (int(ds.Rows), int(ds.Columns))
    if raw.shape != shape:
        raise DataError(path, f"decoded pixels have shape {raw.shape}, the header says {shape}")
    stored = int(ds.BitsStored)
    max_value = (1 << stored) - 1
    pixels = raw.astype(np.uint16)
    photometric = str(ds.PhotometricInterpretation).strip()
    if photometric == "MONOCHROME1":
        pixels = (max_value - np.minimum(pixels, max_value)).astype(np.uint16)
    info = header_info(ds)
    info.update(bits_allocated=int(ds.BitsAllocated), bits_stored=stored, max_value=max_value,
                photometric=photometric, inverted=photometric == "MONOCHROME1",
                transfer_syntax=str(_transfer_syntax(ds)))
    return pixels, info


def header_info(ds: Dataset) -> dict[str, Any]:
    """Size and identifying tags of a parsed dataset ("" for an absent tag)."""
    def text(keyword: str) -> str:
        return str(ds.get(keyword, "") or "").strip()

    return {
        "rows": int(ds.get("Rows", 0) or 0),
        "columns": int(ds.get("Columns", 0) or 0),
        "patient_id": text("PatientID"),
        "laterality": text("ImageLaterality") or text("Laterality"),
        "view": text("ViewPosition"),
        "series_description": text("SeriesDescription"),
        "study_uid": text("StudyInstanceUID"),
        "series_uid": text("SeriesInstanceUID"),
        "sop_uid": text("SOPInstanceUID"),
    }


def read_header(path: str | Path) -> dict[str, Any]:
    """:func:`header_info` of a file, without reading its pixels (for sizes and tags of many files)."""
    path = Path(path)
    ds = _open(path, pixels=False)
    for name in ("Rows", "Columns"):
        if name not in ds:
            raise DataError(path, f"DICOM header lacks {name}: truncated, or not an image")
    return header_info(ds)


def dicom_shape(path: str | Path) -> tuple[int, int]:
    """(rows, columns) of a DICOM image from its header."""
    info = read_header(path)
    return info["rows"], info["columns"]


# ---------------------------------------------------------------- writing


def deterministic_uid(*parts: object) -> str:
    """A valid DICOM UID derived from ``parts`` (same parts, same UID), under pydicom's root."""
    return generate_uid(entropy_srcs=[str(part) for part in parts])


def _pixel_format(pixels: np.ndarray, bits_stored: int | None) -> tuple[int, int]:
    """(BitsAllocated, BitsStored) for an array; a ValueError for one this writer cannot store."""
    if pixels.ndim != 2:
        raise ValueError(f"a mammogram is 2-D, got shape {pixels.shape}")
    if pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"pixels must be uint8 or uint16, got {pixels.dtype}")
    allocated = pixels.dtype.itemsize * 8
    stored = allocated if bits_stored is None else int(bits_stored)
    if not 1 <= stored <= allocated:
        raise ValueError(f"bits_stored {stored} is outside 1..{allocated} for {pixels.dtype}")
    if pixels.size and int(pixels.max()) >= (1 << stored):
        raise ValueError(f"largest value {int(pixels.max())} does not fit in {stored} bits")
    return allocated, stored


def _file_meta(sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def _save(ds: Dataset, target: Path) -> None:
    try:
        ds.save_as(target, enforce_file_format=True)  # pydicom >= 3
    except TypeError:
        ds.is_little_endian, ds.is_implicit_VR = True, False  # pydicom 2.x
        ds.save_as(target, write_like_original=False)


def write_mammogram(path: str | Path, pixels: np.ndarray, *, photometric: str = "MONOCHROME2",
                    bits_stored: int | None = None, uid_key: str | None = None, **tags: Any) -> None:
    """Write ``pixels`` (uint8 or uint16, stored values) as a DICOM file, atomically.

    ``photometric`` is written as given: the values are stored as passed, so a
    MONOCHROME1 file reads back inverted. ``tags`` are DICOM keywords, e.g.
    ``PatientID="Mass-Training_P_00001_LEFT_CC"``, ``Laterality="L"``,
    ``ViewPosition="CC"``, ``SeriesDescription="full mammogram images"``;
    ``ImageLaterality`` follows ``Laterality`` unless given. The Study, Series
    and SOP Instance UIDs, unless given, derive from ``uid_key`` (default:
    PatientID and SeriesDescription), so the same call writes the same bytes.
    """
    if photometric not in SUPPORTED_PHOTOMETRIC:
        raise ValueError(f"photometric must be one of {SUPPORTED_PHOTOMETRIC}, got {photometric!r}")
    pixels = np.ascontiguousarray(pixels)
    allocated, stored = _pixel_format(pixels, bits_stored)
    key = uid_key if uid_key is not None else f"{tags.get('PatientID', '')}/{tags.get('SeriesDescription', '')}"
    sop_uid = str(tags.pop("SOPInstanceUID", None) or deterministic_uid(key, "sop"))

    ds = Dataset()
    ds.file_meta = _file_meta(sop_uid)
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = deterministic_uid(key, "study")
    ds.SeriesInstanceUID = deterministic_uid(key, "series")
    ds.Modality = "MG"
    ds.ConversionType = "WSD"  # workstation: a digitised film, as CBIS-DDSM's Secondary Capture files
    ds.PatientName = str(tags.get("PatientID", ""))
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = (int(n) for n in pixels.shape)
    ds.BitsAllocated = allocated
    ds.BitsStored = stored
    ds.HighBit = stored - 1
    ds.PixelRepresentation = 0
    if "Laterality" in tags and "ImageLaterality" not in tags:
        tags["ImageLaterality"] = tags["Laterality"]
    for keyword, value in tags.items():
        if tag_for_keyword(keyword) is None:
            raise ValueError(f"{keyword!r} is not a DICOM keyword")
        setattr(ds, keyword, value)
    data = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes()
    ds.PixelData = data + b"\0" * (len(data) % 2)  # DICOM values have even length
    with atomic_path(path) as tmp:
        _save(ds, tmp)
