"""INbreast (Moreira et al., Acad. Radiol. 2012), read as published, and the writers its stand-in uses.

A copy holds, at its top (or one folder down, as the release's ``INbreast Release 1.0/`` unpacks):

* ``AllDICOMs/<FileName>_<16 hex>_MG_<L|R>_<CC|ML>_ANON.dcm``: one full-field digital mammogram each (about 70
  microns; the pixel size is taken from ``PixelSpacing`` or ``ImagerPixelSpacing``, else the ``pixel_mm``
  argument). ``ML`` in a file name is the MLO view.
* ``INbreast.csv``, ``;``-separated: ``Patient ID;Patient age;Laterality;View;Acquisition date;File Name;ACR;
  Bi-Rads``. The table is the index: every listed File Name must have its DICOM (else a :class:`DataError`);
  DICOMs it does not list are skipped with a warning; rows with every field empty (the file's tail) are skipped;
  the table's laterality and view must match the DICOM's name.
* ``AllXML/<FileName>.xml``, an Apple XML property list (read with :mod:`plistlib`): ``Images[0].ROIs[]``, each with
  ``Name`` (``Calcification``, ``Mass``, ``Cluster``, ...) and ``Point_px``, strings ``"(x, y)"`` in pixels with x
  the column and y the row (pixel centres at integers). Images without findings have no XML file.

The calcification mask paints every ROI named ``Calcification`` (case aside; other names, clusters included, are
regions, not calcifications): a ROI of one or two points is a point, each painted as a disc of ``point_radius_px``
(:func:`paint_disc`; the pixel holding the point always); a longer one is a closed contour, filled
(:func:`paint_polygon`: pixel centres inside it or within half a pixel of its outline). The default radius of 2
pixels (0.14 mm at 70 microns) makes a disc of 0.35 mm, a typical microcalcification (0.1-1 mm); the paper's
masks are drawn pixel by pixel, so the radius is a setting.

Every problem is a :class:`DataError` naming the file: an unreadable or truncated DICOM, a property list that
does not parse or lacks ``Images``, a calcification ROI with no points, a point string that is not ``(x, y)``, a
point outside the image, an image listed in the table without its DICOM.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import plistlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from medrepro.data.atomic import atomic_path, write_text
from medrepro.errors import DataError, name_list
from medrepro.shared.dicom import read_mammogram
from medrepro.studies.microcalc.readers import CalcificationImage, dicom_spacing_and_acquisition

log = logging.getLogger(__name__)

TABLE_FILE = "INbreast.csv"
DICOM_DIR = "AllDICOMs"
XML_DIR = "AllXML"
TABLE_COLUMNS = ("Patient ID", "Patient age", "Laterality", "View", "Acquisition date", "File Name", "ACR",
                 "Bi-Rads")
_NEEDED_COLUMNS = ("File Name", "Laterality", "View")
CALCIFICATION = "Calcification"
DEFAULT_POINT_RADIUS_PX = 2.0
#: INbreast's pixel size (mm), used only for a DICOM that carries none.
INBREAST_PIXEL_MM = 0.07
#: A ROI with this many points or fewer is a point (or two), not a contour.
POINT_LIKE_MAX = 2
#: OsiriX ROI types as INbreast's files use them: a single point, a closed pencil contour.
POINT_TYPE, CONTOUR_TYPE = 19, 15

DICOM_NAME = re.compile(r"(?P<file_name>[^_/\\]+)_(?P<key>[0-9a-fA-F]{16})_MG_(?P<laterality>[LR])_"
                        r"(?P<view>CC|ML)_ANON\.dcm")
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_POINT = re.compile(rf"\(\s*({_NUMBER})\s*,\s*({_NUMBER})\s*(?:,\s*{_NUMBER}\s*)?\)")


def normal_view(view: str) -> str:
    """``CC`` or ``MLO`` from the spellings INbreast uses (``ML`` in file names)."""
    view = view.strip().upper()
    return "MLO" if view in ("ML", "MLO") else view


# ---------------------------------------------------------------- the table


@dataclass(frozen=True)
class InbreastEntry:
    """One image of the table joined to its files (``xml`` None when the image has no annotation file)."""

    file_name: str
    laterality: str
    view: str
    acr: str
    birads: str
    dicom: Path
    xml: Path | None
    table: Path


def _decode(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(path, f"cannot read the table: {exc}") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # accented names in an old spreadsheet export; the fields read are ASCII


def read_table(path: str | Path) -> list[dict[str, str]]:
    """The rows of ``INbreast.csv`` as {column: text}, with their 1-based line number under ``"_line"``.

    Columns are matched without regard to case or surrounding spaces; File Name, Laterality and View are needed.
    Rows with every field empty are skipped; a row with data but no File Name, a repeated File Name, or a
    laterality or view INbreast does not use is an error naming the line.
    """
    path = Path(path)
    lines = list(csv.reader(io.StringIO(_decode(path)), delimiter=";"))
    if not lines:
        raise DataError(path, "empty table; expected the header " + ";".join(TABLE_COLUMNS))
    header = {name.strip().casefold(): i for i, name in enumerate(lines[0])}
    missing = [c for c in _NEEDED_COLUMNS if c.casefold() not in header]
    if missing:
        raise DataError(path, f"the header lacks {', '.join(missing)}; found {';'.join(lines[0])!r} "
                              f"(INbreast's is {';'.join(TABLE_COLUMNS)})")
    rows, seen = [], set()
    for number, fields in enumerate(lines[1:], start=2):
        if not any(f.strip() for f in fields):
            continue
        row = {column: _field(fields, header, column) for column in TABLE_COLUMNS}
        row["_line"] = str(number)
        _check_row(path, number, row, seen)
        seen.add(row["File Name"])
        rows.append(row)
    return rows


def _field(fields: list[str], header: dict[str, int], column: str) -> str:
    """A row's value of ``column`` ("" when the table has no such column or the row stops short)."""
    index = header.get(column.casefold())
    return fields[index].strip() if index is not None and index < len(fields) else ""


def _check_row(path: Path, number: int, row: dict[str, str], seen: set[str]) -> None:
    name = row["File Name"]
    if not name:
        raise DataError(path, f"line {number} has data but no File Name")
    if name in seen:
        raise DataError(path, f"line {number}: File Name {name} is listed twice")
    if row["Laterality"].upper() not in ("L", "R"):
        raise DataError(path, f"line {number}: Laterality {row['Laterality']!r} is not L or R")
    if normal_view(row["View"]) not in ("CC", "MLO"):
        raise DataError(path, f"line {number}: View {row['View']!r} is not CC or MLO")


def write_table(path: str | Path, rows: Sequence[dict], trailing_empty_rows: int = 0) -> None:
    """``INbreast.csv`` from rows keyed by :data:`TABLE_COLUMNS`, ``;``-separated, with ``trailing_empty_rows``
    all-empty rows at the end as the published file has (the stand-in writes them to keep readers honest)."""
    lines = [";".join(TABLE_COLUMNS)]
    for row in rows:
        values = [str(row.get(column, "")) for column in TABLE_COLUMNS]
        if any(";" in v or "\n" in v for v in values):
            raise ValueError(f"a field of {values} holds ';' or a line break")
        lines.append(";".join(values))
    lines += [";" * (len(TABLE_COLUMNS) - 1)] * trailing_empty_rows
    write_text(path, "\n".join(lines) + "\n")


# ---------------------------------------------------------------- the files


def find_root(root: str | Path) -> Path:
    """The folder holding ``INbreast.csv``: ``root`` itself, or its one subfolder that does (the release's
    ``INbreast Release 1.0/``); ``root`` when neither is found, so the caller's check names it."""
    root = Path(root)
    if (root / TABLE_FILE).is_file() or not root.is_dir():
        return root
    inside = [p for p in sorted(root.iterdir()) if p.is_dir() and (p / TABLE_FILE).is_file()]
    return inside[0] if len(inside) == 1 else root


def dicom_file_name(file_name: str, key: str, laterality: str, view: str) -> str:
    """The published DICOM name: ``<FileName>_<16 hex>_MG_<L|R>_<CC|ML>_ANON.dcm`` (MLO is spelt ``ML``)."""
    name = f"{file_name}_{key}_MG_{laterality}_{'ML' if normal_view(view) == 'MLO' else view}_ANON.dcm"
    if not DICOM_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not an INbreast DICOM name")
    return name


def index_dicoms(folder: str | Path) -> dict[str, tuple[Path, str, str]]:
    """{File Name: (path, laterality, view)} of every ``.dcm`` in ``folder``; a name that does not follow the
    published pattern, or a File Name on two files, is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, f"the {DICOM_DIR} folder is missing")
    found: dict[str, tuple[Path, str, str]] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() != ".dcm":
            continue
        match = DICOM_NAME.fullmatch(path.name)
        if match is None:
            raise DataError(path, "not an INbreast DICOM name (<FileName>_<16 hex>_MG_<L|R>_<CC|ML>_ANON.dcm)")
        name = match["file_name"]
        if name in found:
            raise DataError(path, f"File Name {name} also names {found[name][0].name}")
        found[name] = (path, match["laterality"], normal_view(match["view"]))
    return found


def index_inbreast(root: str | Path) -> list[InbreastEntry]:
    """Every image the table lists, with its DICOM and (when there is one) its XML, in table order."""
    root = find_root(root)
    table = root / TABLE_FILE
    if not table.is_file():
        raise DataError(table, "INbreast's table is missing")
    dicoms = index_dicoms(root / DICOM_DIR)
    entries = []
    for row in read_table(table):
        name = row["File Name"]
        side, view = row["Laterality"].upper(), normal_view(row["View"])
        if name not in dicoms:
            expected = root / DICOM_DIR / f"{name}_<16 hex>_MG_{side}_{'ML' if view == 'MLO' else view}_ANON.dcm"
            raise DataError(expected, f"missing: {table.name} line {row['_line']} lists File Name {name} but "
                                      f"{DICOM_DIR}/ has no DICOM of it")
        path, file_side, file_view = dicoms[name]
        if (file_side, file_view) != (side, view):
            raise DataError(path, f"the file name says {file_side} {file_view}, {table.name} line {row['_line']} "
                                  f"says {side} {view}")
        xml = root / XML_DIR / f"{name}.xml"
        entries.append(InbreastEntry(name, side, view, row["ACR"], row["Bi-Rads"], path,
                                     xml if xml.is_file() else None, table))
    unlisted = sorted(set(dicoms) - {e.file_name for e in entries})
    if unlisted:
        log.warning("INbreast: %d DICOMs are not in %s and are skipped: %s", len(unlisted), table,
                    name_list(unlisted))
    return entries


# ---------------------------------------------------------------- annotations


@dataclass(frozen=True, eq=False)
class Roi:
    """One ROI of an annotation file: its position in the file, its name and its points (n, 2) as (x, y)."""

    index: int
    name: str
    points: np.ndarray

    @property
    def is_calcification(self) -> bool:
        return self.name.strip().casefold() == CALCIFICATION.casefold()


def parse_point(text, path: Path, roi_index: int) -> tuple[float, float]:
    """(x, y) from a ``Point_px`` string ``"(x, y)"`` (a third, z, component is ignored)."""
    match = _POINT.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise DataError(path, f"ROI {roi_index}: point {text!r} is not '(x, y)'")
    x, y = float(match[1]), float(match[2])
    if not (math.isfinite(x) and math.isfinite(y)):
        raise DataError(path, f"ROI {roi_index}: point {text!r} is not finite")
    return x, y


def _load_plist(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            data = plistlib.load(handle)
    except OSError as exc:
        raise DataError(path, f"cannot read the annotation file: {exc}") from exc
    except Exception as exc:  # plistlib raises expat, ValueError, TypeError and more on a damaged file
        raise DataError(path, f"not a valid XML property list: {type(exc).__name__}: {exc}") from exc
    if not isinstance(data, dict):
        raise DataError(path, f"the property list holds a {type(data).__name__}, expected a dict with 'Images'")
    return data


def read_rois(path: str | Path) -> list[Roi]:
    """Every ROI of ``Images[0]`` of an INbreast XML file (all names; points as given, possibly none)."""
    path = Path(path)
    data = _load_plist(path)
    images = data.get("Images")
    if not isinstance(images, list) or not images or not isinstance(images[0], dict):
        raise DataError(path, "no 'Images' array with an image dict: not an INbreast annotation file")
    rois = images[0].get("ROIs", [])
    if not isinstance(rois, list):
        raise DataError(path, f"'ROIs' is a {type(rois).__name__}, expected an array")
    out = []
    for index, roi in enumerate(rois):
        if not isinstance(roi, dict):
            raise DataError(path, f"ROI {index} is a {type(roi).__name__}, expected a dict")
        raw = roi.get("Point_px", [])
        if not isinstance(raw, list):
            raise DataError(path, f"ROI {index}: 'Point_px' is a {type(raw).__name__}, expected an array")
        points = np.array([parse_point(text, path, index) for text in raw], dtype=np.float64).reshape(-1, 2)
        out.append(Roi(index, str(roi.get("Name", "")), points))
    return out


def format_point(x: float, y: float) -> str:
    """A ``Point_px`` string as INbreast writes it: ``"(x, y)"`` with six decimals."""
    return f"({x:.6f}, {y:.6f})"


def _polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def write_rois(path: str | Path, rois: Sequence[tuple[str, np.ndarray]], pixel_mm: float) -> None:
    """An INbreast XML file (Apple XML plist) with one image whose ROIs are ``(name, points (n, 2) as (x, y))``;
    a single point is written as an OsiriX point ROI, more as a closed contour."""
    entries = []
    for index, (name, points) in enumerate(rois):
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        centre = points.mean(axis=0) if len(points) else np.zeros(2)
        entries.append({
            "Area": _polygon_area(points) * pixel_mm ** 2 if len(points) > POINT_LIKE_MAX else 0.0,
            "Center": f"({centre[0] * pixel_mm:.6f}, {centre[1] * pixel_mm:.6f}, 0.000000)",
            "IndexInImage": index, "Name": name, "NumberOfPoints": len(points),
            "Point_mm": [f"({x * pixel_mm:.6f}, {y * pixel_mm:.6f}, 0.000000)" for x, y in points],
            "Point_px": [format_point(x, y) for x, y in points],
            "Type": POINT_TYPE if len(points) == 1 else CONTOUR_TYPE,
        })
    document = {"Images": [{"ImageIndex": 0, "NumberOfROIs": len(entries), "ROIs": entries}]}
    with atomic_path(path) as tmp:
        tmp.write_bytes(plistlib.dumps(document, fmt=plistlib.FMT_XML))


# ---------------------------------------------------------------- painting


def _nearest_pixel(value: float) -> int:
    return int(math.floor(value + 0.5))


def paint_disc(mask: np.ndarray, x: float, y: float, radius_px: float) -> None:
    """Set the pixels whose centre lies within ``radius_px`` of (x, y) (x the column), and the pixel holding the
    point, so that a disc smaller than a pixel still marks one."""
    rows, cols = mask.shape
    r0, r1 = max(int(math.floor(y - radius_px)), 0), min(int(math.ceil(y + radius_px)) + 1, rows)
    c0, c1 = max(int(math.floor(x - radius_px)), 0), min(int(math.ceil(x + radius_px)) + 1, cols)
    if r0 < r1 and c0 < c1:
        rr, cc = np.ogrid[r0:r1, c0:c1]
        mask[r0:r1, c0:c1] |= (cc - x) ** 2 + (rr - y) ** 2 <= radius_px ** 2
    row, col = _nearest_pixel(y), _nearest_pixel(x)
    if 0 <= row < rows and 0 <= col < cols:
        mask[row, col] = True


def _paint_segment(mask: np.ndarray, start: np.ndarray, end: np.ndarray, reach: float) -> None:
    """Set the pixels whose centre lies within ``reach`` of the segment (both ends included)."""
    rows, cols = mask.shape
    low, high = np.minimum(start, end) - reach, np.maximum(start, end) + reach
    c0, c1 = max(int(math.floor(low[0])), 0), min(int(math.ceil(high[0])), cols - 1)
    r0, r1 = max(int(math.floor(low[1])), 0), min(int(math.ceil(high[1])), rows - 1)
    if r0 > r1 or c0 > c1:
        return
    rr, cc = np.mgrid[r0:r1 + 1, c0:c1 + 1].astype(np.float64)
    dx, dy = end - start
    length2 = dx * dx + dy * dy
    t = np.clip(((cc - start[0]) * dx + (rr - start[1]) * dy) / length2, 0.0, 1.0) if length2 > 0 else 0.0
    distance2 = (cc - start[0] - t * dx) ** 2 + (rr - start[1] - t * dy) ** 2
    mask[r0:r1 + 1, c0:c1 + 1] |= distance2 <= reach * reach + 1e-9


def paint_polygon(mask: np.ndarray, points: np.ndarray) -> None:
    """Fill a closed contour (n, 2) of (x, y): the pixels whose centre lies inside it (even-odd rule, scan line
    by scan line) or within half a pixel of its outline, so a contour one pixel wide keeps its pixels."""
    points = np.asarray(points, dtype=np.float64)
    x, y = points[:, 0], points[:, 1]
    x2, y2 = np.roll(x, -1), np.roll(y, -1)
    rows, cols = mask.shape
    for row in range(max(int(math.ceil(y.min())), 0), min(int(math.floor(y.max())), rows - 1) + 1):
        # half-open edges (low <= row < high) count a vertex on the scan line once, so crossings pair up
        crossing = (np.minimum(y, y2) <= row) & (row < np.maximum(y, y2))
        if not crossing.any():
            continue
        xs = np.sort(x[crossing] + (row - y[crossing]) * (x2[crossing] - x[crossing]) / (y2[crossing] - y[crossing]))
        for left, right in zip(xs[0::2], xs[1::2]):
            c0, c1 = max(int(math.ceil(left)), 0), min(int(math.floor(right)), cols - 1)
            if c0 <= c1:
                mask[row, c0:c1 + 1] = True
    for start, end in zip(points, np.roll(points, -1, axis=0)):
        _paint_segment(mask, start, end, 0.5)


def _check_inside(roi: Roi, shape: tuple[int, int], path: Path) -> None:
    """Every point on a pixel of the image: x (the column) in [-0.5, cols - 0.5), y (the row) likewise."""
    rows, cols = shape
    x, y = roi.points[:, 0], roi.points[:, 1]
    outside = (x < -0.5) | (x >= cols - 0.5) | (y < -0.5) | (y >= rows - 0.5)
    if outside.any():
        bad = roi.points[int(np.argmax(outside))]
        raise DataError(path, f"ROI {roi.index} ({roi.name}): point {format_point(*bad)} lies outside the image of "
                              f"{cols} columns x {rows} rows (x is the column, y the row)")


def calcification_mask(rois: Sequence[Roi], shape: tuple[int, int], point_radius_px: float = DEFAULT_POINT_RADIUS_PX,
                       path: str | Path | None = None) -> np.ndarray:
    """The bool (rows, cols) mask of the calcification ROIs: points as discs, contours filled (module docstring);
    a calcification ROI without points, or with a point outside the image, is an error naming ``path``."""
    if not (math.isfinite(point_radius_px) and point_radius_px >= 0):
        raise ValueError(f"point_radius_px={point_radius_px!r} must be a finite radius >= 0")
    path = Path(path) if path is not None else None
    mask = np.zeros(shape, dtype=bool)
    for roi in rois:
        if not roi.is_calcification:
            continue
        if len(roi.points) == 0:
            raise DataError(path, f"ROI {roi.index} ({roi.name}) has no points (Point_px is empty)")
        _check_inside(roi, shape, path)
        if len(roi.points) <= POINT_LIKE_MAX:
            for x, y in roi.points:
                paint_disc(mask, x, y, point_radius_px)
        else:
            paint_polygon(mask, roi.points)
    return mask


# ---------------------------------------------------------------- images


def read_inbreast_image(entry: InbreastEntry, *, point_radius_px: float = DEFAULT_POINT_RADIUS_PX,
                        pixel_mm: float = INBREAST_PIXEL_MM) -> CalcificationImage:
    """One INbreast image: its pixels, pixel size (from the DICOM, else ``pixel_mm``), acquisition and the
    calcification mask painted from its XML file (empty, and ``annotated`` False, without one)."""
    pixels, info = read_mammogram(entry.dicom)
    spacing, acquisition = dicom_spacing_and_acquisition(entry.dicom)
    if spacing is None:
        spacing = (float(pixel_mm), float(pixel_mm))
    if entry.xml is None:
        mask = np.zeros(pixels.shape, dtype=bool)
    else:
        mask = calcification_mask(read_rois(entry.xml), pixels.shape, point_radius_px, entry.xml)
    sources = (entry.dicom, *((entry.xml,) if entry.xml is not None else ()), entry.table)
    return CalcificationImage(name=entry.file_name, image=pixels, max_value=int(info["max_value"]), spacing_mm=spacing,
                              acquisition=acquisition, mask=mask, annotated=entry.xml is not None,
                              laterality=entry.laterality, view=entry.view, sources=sources)


def read_inbreast(root: str | Path, *, point_radius_px: float = DEFAULT_POINT_RADIUS_PX,
                  pixel_mm: float = INBREAST_PIXEL_MM) -> Iterator[CalcificationImage]:
    """Every image of a copy in table order, one at a time (410 full mammograms do not fit in memory at once);
    the table and file names are checked before the first image is read."""
    entries = index_inbreast(root)
    return (read_inbreast_image(entry, point_radius_px=point_radius_px, pixel_mm=pixel_mm) for entry in entries)
