"""The study's mammograms as every step reads them: from the configured source format, at the working pixel
size, intensities scaled to 0..1.

The patch extraction, the whole-mammogram segmentation and the figures all read the raw files through
:func:`read_mammograms`, so the test images that the segmentation scores are exactly the ones the patches were
cut from: the same reader, the same resampling (:mod:`.resample`) and the same scaling (stored value over the
bit depth's maximum, so that 12-bit films and 14-bit detector images share one range).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np

from medrepro.errors import ConfigError, DataError, name_list
from medrepro.provenance.hashing import sha256_file
from medrepro.studies.microcalc.patchdb import Mammogram
from medrepro.studies.microcalc.readers import CalcificationImage, DIGITAL, inbreast, masks_dir
from medrepro.studies.microcalc.resample import PAPER_PIXEL_MM, resample_record

FORMATS = ("inbreast", "masks_dir")


@dataclass(frozen=True)
class Source:
    """Where the mammograms come from and how they are read: ``format`` (INbreast's release or a folder of images
    with masks), ``point_radius_px`` (the disc an INbreast point annotation is painted as, native pixels),
    ``native_pixel_mm`` (the pixel size where a file gives none; None: the format's own default) and
    ``pixel_mm``, the working pixel size everything is resampled to."""

    format: str = "inbreast"
    point_radius_px: float = inbreast.DEFAULT_POINT_RADIUS_PX
    native_pixel_mm: float | None = None
    pixel_mm: float = PAPER_PIXEL_MM

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ConfigError(f"mammogram format {self.format!r} is not one of {name_list(FORMATS)}")

    @classmethod
    def from_section(cls, section: Mapping, pixel_mm: float) -> "Source":
        """From the dataset section (``format``, ``point_radius_px``, ``native_pixel_mm``) and the study's pixel
        size."""
        return cls(format=section["format"], point_radius_px=float(section["point_radius_px"]),
                   native_pixel_mm=section.get("native_pixel_mm"), pixel_mm=float(pixel_mm))


def _entries(raw_dir: str | Path, source: Source) -> list:
    if source.format == "inbreast":
        return inbreast.index_inbreast(inbreast.find_root(raw_dir))
    return masks_dir.index_masks_dir(raw_dir)


def _entry_name(entry) -> str:
    return str(entry.file_name if hasattr(entry, "file_name") else entry.name)


def image_names(raw_dir: str | Path, source: Source) -> list[str]:
    """The names of every image the source lists (its index only: no pixel is read)."""
    return [_entry_name(entry) for entry in _entries(raw_dir, source)]


def _read_record(entry, source: Source) -> CalcificationImage:
    if source.format == "inbreast":
        native = inbreast.INBREAST_PIXEL_MM if source.native_pixel_mm is None else source.native_pixel_mm
        return inbreast.read_inbreast_image(entry, point_radius_px=source.point_radius_px, pixel_mm=native)
    return masks_dir.read_masks_dir_image(entry, pixel_mm=source.native_pixel_mm)


def as_mammogram(record: CalcificationImage, pixel_mm: float, root: str | Path | None = None) -> Mammogram:
    """A reader's image at ``pixel_mm``, scaled to 0..1, with the digests of the files it came from (``root``: the
    dataset's folder, which the database's paths are relative to)."""
    resampled = resample_record(record, pixel_mm)
    if not resampled.mask.any() and record.mask.any():  # resampling keeps every calcification (.resample)
        raise DataError(record.sources[0], "the calcification mask vanished when resampled")
    image = (resampled.image / np.float32(record.max_value)).astype(np.float32)
    mask_file = record.sources[1] if len(record.sources) > 1 and record.sources[1].suffix != ".csv" else None
    return Mammogram(name=record.name, image=image, mask=resampled.mask, source=str(record.sources[0]),
                     sha256=sha256_file(record.sources[0]), digital=record.acquisition == DIGITAL,
                     pixel_size=float(pixel_mm), mask_source=None if mask_file is None else str(mask_file),
                     mask_sha256=None if mask_file is None else sha256_file(mask_file),
                     root=None if root is None else str(root))


def read_mammograms(raw_dir: str | Path, source: Source, names: Iterable[str] | None = None) -> Iterator[Mammogram]:
    """The mammograms (all, or those ``names`` in the source's order), one at a time: a full-field mammogram at
    0.05 mm is about 100 MB, so they are never all held at once. A name the source lacks is a DataError."""
    entries = _entries(raw_dir, source)
    if names is not None:
        wanted = set(map(str, names))
        missing = sorted(wanted - {_entry_name(e) for e in entries})
        if missing:
            raise DataError(raw_dir, f"the source has no image named {name_list(missing)}; the patch database was "
                                     "built from other raw files: rerun the extraction")
        entries = [entry for entry in entries if _entry_name(entry) in wanted]
    return (as_mammogram(_read_record(entry, source), source.pixel_mm, raw_dir) for entry in entries)
