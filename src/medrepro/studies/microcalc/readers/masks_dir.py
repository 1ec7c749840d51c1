"""A plain directory of mammograms with binary calcification masks (a clinic's own data, like the paper's 283).

The layout, all in one folder::

    <root>/<stem>.dcm  or  <root>/<stem>.png    the mammogram
    <root>/<stem>_mask.png                      its mask: 0 / 255 (or 0 / 1), the image's size
    <root>/images.csv                           optional: image,pixel_mm,acquisition (one row per image)

* Images: DICOM as :func:`medrepro.shared.dicom.read_mammogram` reads it (MONOCHROME1 inverted, so bright is
  always dense), or an 8- or 16-bit grey PNG (bright = dense). Suffixes in any case; a stem may have one image.
* ``images.csv`` (comma-separated, a header line): ``image`` the image's file name (``case01.png``),
  ``pixel_mm`` its square pixel size in mm, ``acquisition`` ``digital`` or ``film`` (digitised film); either
  value may be left empty.
* Pixel size, first found: the table, the DICOM's ``PixelSpacing`` / ``ImagerPixelSpacing``, the reader's
  ``pixel_mm``; a PNG has none of its own. A table value that differs from the DICOM's own by more than 1 % is
  an error.
* Acquisition, first found: the table, the DICOM (``ConversionType`` ``DF`` is digitised film, anything else
  digital), the reader's ``acquisition``. A table saying ``digital`` for a DICOM marked ``DF`` is an error.

Errors name the file: an image without its mask or a mask without its image, a mask whose size differs from
its image, a table row for a file that is not there, an image left without a pixel size or acquisition.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from medrepro.data.atomic import write_text
from medrepro.data.io.png import TWELVE_BIT_MAX, read_binary_mask, read_grey
from medrepro.errors import DataError, name_list
from medrepro.shared.dicom import read_mammogram
from medrepro.studies.microcalc.readers import (
    ACQUISITIONS, FILM, CalcificationImage, check_spacing, dicom_spacing_and_acquisition)

TABLE_FILE = "images.csv"
TABLE_COLUMNS = ("image", "pixel_mm", "acquisition")
MASK_SUFFIX = "_mask.png"
IMAGE_SUFFIXES = (".dcm", ".png")
#: How far (relative) the table's pixel size may differ from a DICOM's own before they contradict each other.
SPACING_TOLERANCE = 0.01


@dataclass(frozen=True)
class MaskDirEntry:
    """One image of the folder with its mask and what the table says of it (None: not given)."""

    name: str
    image: Path
    mask: Path
    pixel_mm: float | None
    acquisition: str | None
    table: Path | None


def _check_acquisition(value: str | None, path: Path | None, where: str) -> str | None:
    if value is None or value == "":
        return None
    if value not in ACQUISITIONS:
        raise DataError(path, f"{where}: acquisition {value!r} is not one of {', '.join(ACQUISITIONS)}")
    return value


def read_table(path: str | Path) -> dict[str, tuple[float | None, str | None]]:
    """{image file name: (pixel_mm, acquisition)} from ``images.csv`` (None where a value is left empty)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(path, f"cannot read the table: {exc}") from exc
    if not rows:
        return {}
    missing = [c for c in TABLE_COLUMNS if c not in rows[0]]
    if missing:
        raise DataError(path, f"the header lacks {', '.join(missing)}; expected {','.join(TABLE_COLUMNS)}")
    table = {}
    for number, row in enumerate(rows, start=2):
        name = (row["image"] or "").strip()
        if not name:
            raise DataError(path, f"line {number} names no image")
        if name in table:
            raise DataError(path, f"line {number}: image {name} is listed twice")
        text = (row["pixel_mm"] or "").strip()
        pixel = check_spacing((text, text), path, f"line {number}: pixel_mm")[0] if text else None
        table[name] = (pixel, _check_acquisition((row["acquisition"] or "").strip().lower(), path, f"line {number}"))
    return table


def write_table(path: str | Path, rows: Sequence[tuple[str, float | None, str | None]]) -> None:
    """``images.csv`` from (image file name, pixel_mm, acquisition) rows; None is written empty."""
    lines = [",".join(TABLE_COLUMNS)]
    for name, pixel, acquisition in rows:
        lines.append(f"{name},{'' if pixel is None else f'{pixel:g}'},{acquisition or ''}")
    write_text(path, "\n".join(lines) + "\n")


def _is_mask(path: Path) -> bool:
    return path.name.lower().endswith(MASK_SUFFIX)


def _images_and_masks(root: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """{stem: image} and {stem: mask} of the folder; two images of one stem are an error."""
    images: dict[str, Path] = {}
    masks: dict[str, Path] = {}
    for path in sorted(p for p in root.iterdir() if p.is_file()):
        if _is_mask(path):
            masks[path.name[:-len(MASK_SUFFIX)]] = path
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            if path.stem in images:
                raise DataError(path, f"a second image of {path.stem} (also {images[path.stem].name}); keep one")
            images[path.stem] = path
    return images, masks


def index_masks_dir(root: str | Path) -> list[MaskDirEntry]:
    """Every image of the folder with its mask and table values, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "the folder of mammograms and masks is missing")
    images, masks = _images_and_masks(root)
    if not images:
        raise DataError(root, "no mammograms (<stem>.dcm or <stem>.png beside <stem>_mask.png)")
    orphans = sorted(set(masks) - set(images))
    if orphans:
        raise DataError(masks[orphans[0]], f"a mask without its image <stem>.dcm or .png ({len(orphans)} such: "
                                           f"{name_list(masks[s].name for s in orphans)})")
    table_path = root / TABLE_FILE
    table = read_table(table_path) if table_path.is_file() else {}
    names = {path.name: stem for stem, path in images.items()}
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise DataError(table_path, f"lists images that are not in {root}: {name_list(unknown)}")
    entries = []
    for stem, image in sorted(images.items()):
        if stem not in masks:
            raise DataError(root / f"{stem}{MASK_SUFFIX}", f"missing: the mask of {image.name}")
        pixel, acquisition = table.get(image.name, (None, None))
        entries.append(MaskDirEntry(stem, image, masks[stem], pixel, acquisition,
                                    table_path if image.name in table else None))
    return entries


def _read_pixels(path: Path) -> tuple[np.ndarray, int, tuple[float, float] | None, str | None, dict]:
    """Pixels, the depth's largest value, and the file's own pixel size and acquisition (None for a PNG)."""
    if path.suffix.lower() == ".dcm":
        pixels, info = read_mammogram(path)
        spacing, acquisition = dicom_spacing_and_acquisition(path)
        return pixels, int(info["max_value"]), spacing, acquisition, info
    pixels = read_grey(path)
    if pixels.dtype == np.uint8:
        top = 255
    else:  # 12-bit content in 16-bit files, as detectors write it (medrepro.data.io.png)
        top = TWELVE_BIT_MAX if int(pixels.max(initial=0)) <= TWELVE_BIT_MAX else 65535
    return pixels, top, None, None, {}


def _spacing(entry: MaskDirEntry, own: tuple[float, float] | None, default: float | None) -> tuple[float, float]:
    if entry.pixel_mm is not None:
        if own is not None and any(abs(v - entry.pixel_mm) > SPACING_TOLERANCE * v for v in own):
            raise DataError(entry.image, f"{TABLE_FILE} gives pixel_mm {entry.pixel_mm:g}, the DICOM "
                                         f"{own[0]:g} x {own[1]:g} mm; correct one of them")
        return entry.pixel_mm, entry.pixel_mm
    if own is not None:
        return own
    if default is not None:
        return check_spacing((default, default), entry.image, "pixel_mm")
    raise DataError(entry.image, f"no pixel size: give it in {TABLE_FILE} ({','.join(TABLE_COLUMNS)}) or as the "
                                 "reader's pixel_mm")


def _acquisition(entry: MaskDirEntry, own: str | None, default: str | None) -> str:
    if entry.acquisition is not None:
        if own == FILM and entry.acquisition != FILM:
            raise DataError(entry.image, f"{TABLE_FILE} says {entry.acquisition}, the DICOM's ConversionType says "
                                         "digitised film (DF)")
        return entry.acquisition
    if own is not None:
        return own
    checked = _check_acquisition(default, entry.image, "reader argument")
    if checked is None:
        raise DataError(entry.image, f"digital or digitised film? Give acquisition in {TABLE_FILE} or to the reader")
    return checked


def read_masks_dir_image(entry: MaskDirEntry, *, pixel_mm: float | None = None,
                         acquisition: str | None = None) -> CalcificationImage:
    """One image of the folder with its mask (checked to be binary and of the image's size); ``pixel_mm`` and
    ``acquisition`` apply where neither the table nor the file says (module docstring)."""
    pixels, top, own_spacing, own_acquisition, info = _read_pixels(entry.image)
    spacing = _spacing(entry, own_spacing, pixel_mm)
    kind = _acquisition(entry, own_acquisition, acquisition)
    mask = read_binary_mask(entry.mask, expected_shape=pixels.shape)
    sources = (entry.image, entry.mask, *((entry.table,) if entry.table is not None else ()))
    return CalcificationImage(name=entry.name, image=pixels, max_value=top, spacing_mm=spacing, acquisition=kind,
                              mask=mask, annotated=True, laterality=info.get("laterality", ""),
                              view=info.get("view", ""), sources=sources)


def read_masks_dir(root: str | Path, *, pixel_mm: float | None = None,
                   acquisition: str | None = None) -> Iterator[CalcificationImage]:
    """Every image of the folder, one at a time, sorted by name; the folder is checked before the first is read."""
    entries = index_masks_dir(root)
    return (read_masks_dir_image(entry, pixel_mm=pixel_mm, acquisition=acquisition) for entry in entries)
