"""The original DDSM (University of South Florida), read from its native files.

A case folder ``cases/<normals|benigns|cancers|benign_without_callbacks>/<volume>/case<NNNN>/`` holds:

* ``<letter>-<NNNN>-1.ics``, a text header: ``filename``, ``DIGITIZER`` (``DBA ...``, ``HOWTEK ...``,
  ``LUMISYS ...``) and one line per view, e.g. ``LEFT_CC LINES 6841 PIXELS_PER_LINE 3901 BITS_PER_PIXEL 12
  RESOLUTION 43.5 OVERLAY``: LINES is the height, PIXELS_PER_LINE the width, OVERLAY says an annotation file
  exists (NON_OVERLAY that none does). The first letter is the scanning site: A = MGH, B and C = Wake Forest,
  D = ISMD.
* ``<letter>_<NNNN>_1.<VIEW>.LJPEG``: the view as lossless JPEG (:mod:`.ljpeg`), raw grey levels of the
  digitiser.
* ``<letter>_<NNNN>_1.<VIEW>.OVERLAY`` for views with findings: ``TOTAL_ABNORMALITIES n``, then per
  abnormality ``ABNORMALITY i``, one or two ``LESION_TYPE`` lines, ``ASSESSMENT`` (BI-RADS 0-5), ``SUBTLETY``
  (1-5), ``PATHOLOGY``, ``TOTAL_OUTLINES k`` and ``BOUNDARY`` (then optional ``CORE``) outlines, each a keyword
  line followed by ``x y c c c ... #``: the start column and row, then chain codes.

Chain codes step one pixel: 0 up, then clockwise in 45-degree steps (:data:`CHAIN_STEPS`, (dx, dy) with x the
column and y the row, down). Outlines are closed polygons through the pixel centres they visit; real outlines
sometimes run past the image border, so they are clipped to it and counted (:attr:`Outline.clipped`), and
only an outline wholly outside the image is an error.

Grey levels become optical density through the published per-digitiser formulas (:func:`optical_density`),
so that every scanner shares one scale.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medrepro.errors import ConfigError, DataError, name_list

VIEWS = ("LEFT_CC", "LEFT_MLO", "RIGHT_CC", "RIGHT_MLO")
CASE_TYPES = ("normals", "benigns", "cancers", "benign_without_callbacks")
SITES = {"A": "MGH", "B": "Wake Forest", "C": "Wake Forest", "D": "ISMD"}
# (dx, dy) of chain codes 0-7: 0 up, then clockwise (x = column, y = row downwards).
CHAIN_STEPS = np.array([(0, -1), (1, -1), (1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1)], dtype=np.int64)
_DIRECTION_OF = {tuple(step): code for code, step in enumerate(CHAIN_STEPS.tolist())}
PATHOLOGIES = ("MALIGNANT", "BENIGN", "BENIGN_WITHOUT_CALLBACK", "UNPROVEN")


# ---------------------------------------------------------------- the .ics header
@dataclass(frozen=True)
class ViewHeader:
    """One view's line of the ``.ics``: its size (rows = LINES, columns = PIXELS_PER_LINE), bit depth,
    resolution (microns) and whether it has an overlay."""

    view: str
    rows: int
    cols: int
    bits: int
    resolution_um: float
    overlay: bool


@dataclass(frozen=True)
class CaseHeader:
    """A case's ``.ics``: its name (``D-4606-1``), site letter, digitiser line and views."""

    path: str
    name: str
    site: str
    digitizer: str
    views: dict[str, ViewHeader]
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def digitizer_key(self) -> str:
        """Which optical-density formula applies: DBA, HOWTEK_MGH, HOWTEK_ISMD or LUMISYS."""
        return digitizer_key(self.digitizer, self.site, self.path)

    def file_stem(self) -> str:
        """The images' and overlays' name stem: ``D-4606-1`` -> ``D_4606_1``."""
        return self.name.replace("-", "_")


_VIEW_LINE = re.compile(r"^(LEFT_CC|LEFT_MLO|RIGHT_CC|RIGHT_MLO)\s+(.*)$")


def parse_ics(path: str | Path) -> CaseHeader:
    """The header of a case from its ``.ics`` file; a missing view size, bit depth or file name is an error
    naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise DataError(path, f"cannot read the case header: {exc}") from exc
    fields, views = {}, {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        match = _VIEW_LINE.match(line)
        if match:
            views[match.group(1)] = _view_header(path, number, match.group(1), match.group(2))
        else:
            key, _, value = line.partition(" ")
            fields[key] = value.strip()
    name = fields.get("filename")
    if not name or not re.fullmatch(r"[A-D]-\d{4}-1", name):
        raise DataError(path, f"no valid 'filename' line (like D-4606-1): got {name!r}")
    if "DIGITIZER" not in fields:
        raise DataError(path, "no DIGITIZER line: the digitiser decides the optical-density formula")
    if not views:
        raise DataError(path, f"no view lines (any of {', '.join(VIEWS)} with LINES and PIXELS_PER_LINE)")
    digitizer_key(fields["DIGITIZER"], name[0], path)  # an unknown digitiser fails here, naming the file
    return CaseHeader(path=str(path), name=name, site=name[0], digitizer=fields["DIGITIZER"], views=views,
                      fields=fields)


def _view_header(path: Path, number: int, view: str, rest: str) -> ViewHeader:
    tokens = rest.split()
    values = {tokens[i]: tokens[i + 1] for i in range(0, len(tokens) - 1) if tokens[i].isupper()
              and tokens[i] not in ("OVERLAY", "NON_OVERLAY")}
    missing = [key for key in ("LINES", "PIXELS_PER_LINE", "BITS_PER_PIXEL") if key not in values]
    if missing:
        raise DataError(path, f"line {number}: view {view} lacks {', '.join(missing)} (its size and bit depth)")
    try:
        rows, cols, bits = int(values["LINES"]), int(values["PIXELS_PER_LINE"]), int(values["BITS_PER_PIXEL"])
        resolution = float(values.get("RESOLUTION", "nan"))
    except ValueError as exc:
        raise DataError(path, f"line {number}: view {view} has a size that is not a number: {rest!r}") from exc
    if rows <= 0 or cols <= 0 or not 8 <= bits <= 16:
        raise DataError(path, f"line {number}: view {view} has {rows} x {cols} pixels at {bits} bits")
    return ViewHeader(view=view, rows=rows, cols=cols, bits=bits, resolution_um=resolution,
                      overlay="NON_OVERLAY" not in tokens and "OVERLAY" in tokens)


def format_ics(name: str, digitizer: str, views: list[ViewHeader], fields: dict[str, str] | None = None) -> str:
    """An ``.ics`` text as the DDSM writes them (the stand-in's headers)."""
    lines = ["ics_version 1.0", f"filename {name}"]
    lines += [f"{key} {value}".rstrip() for key, value in (fields or {}).items()]
    lines += [f"DIGITIZER {digitizer}", "SEQUENCE"]
    for v in views:
        lines.append(f"{v.view} LINES {v.rows} PIXELS_PER_LINE {v.cols} BITS_PER_PIXEL {v.bits} "
                     f"RESOLUTION {v.resolution_um:g} {'OVERLAY' if v.overlay else 'NON_OVERLAY'}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- optical density
DIGITIZERS = ("DBA", "HOWTEK_MGH", "HOWTEK_ISMD", "LUMISYS")
# The two published sets of constants (see the README): the DDSM site's calibration pages and the DDSM viewer.
# Each maps a grey level GL to optical density: ("log", a, b) is a + b * log10(GL), ("linear", a, b) a + b * GL.
OD_CONSTANTS = {
    "calibration": {
        "DBA": ("log", 4.80662 / 1.07553, -1 / 1.07553),
        "HOWTEK_MGH": ("linear", 3.789, -0.00094568),
        "HOWTEK_ISMD": ("linear", 3.96604095240593, -0.00099055807612),
        "LUMISYS": ("linear", 4096.99 / 1009.01, -1 / 1009.01),
    },
    "viewer": {
        "DBA": ("log", 4.26700423014133, -0.90303289757264),
        "HOWTEK_MGH": ("linear", 3.78928997845071, -0.00094568009377),
        "HOWTEK_ISMD": ("linear", 3.96604095240593, -0.00099055807612),
        "LUMISYS": ("linear", 4.05977749300340, -0.00099080941710),
    },
}


def digitizer_key(digitizer: str, site: str, path: str | Path | None = None) -> str:
    """The formula's digitiser from the ``.ics`` DIGITIZER line and the site letter (HOWTEK at MGH or ISMD)."""
    word = digitizer.split()[0].upper() if digitizer.split() else ""
    if word == "DBA":
        return "DBA"
    if word == "LUMISYS":
        return "LUMISYS"
    if word == "HOWTEK":
        if site == "A":
            return "HOWTEK_MGH"
        if site == "D":
            return "HOWTEK_ISMD"
        raise DataError(path, f"a HOWTEK digitiser at site {site!r}: only MGH (A) and ISMD (D) scanned with one")
    raise DataError(path, f"unknown digitiser {digitizer!r}: expected DBA, HOWTEK or LUMISYS")


def optical_density(grey: np.ndarray, digitizer: str, constants: str = "calibration",
                    clip: tuple[float, float] = (0.05, 3.6)) -> np.ndarray:
    """Optical density (float32) of raw grey levels by the named set of constants, clipped to ``clip``.

    Grey level 0 (no signal) is taken as 1 in the DBA's logarithm."""
    kind, a, b = _formula(digitizer, constants)
    grey = np.asarray(grey, dtype=np.float64)
    x = np.log10(np.maximum(grey, 1.0)) if kind == "log" else grey
    return np.clip(a + b * x, *clip).astype(np.float32)


def grey_level(density: np.ndarray, digitizer: str, constants: str = "calibration", bits: int = 12) -> np.ndarray:
    """The inverse of :func:`optical_density` (unclipped): raw grey levels (uint16 within ``bits``) that a
    digitiser gives for ``density`` (the stand-in writes these)."""
    kind, a, b = _formula(digitizer, constants)
    x = (np.asarray(density, dtype=np.float64) - a) / b
    grey = 10.0 ** x if kind == "log" else x
    return np.clip(np.rint(grey), 0, 2 ** bits - 1).astype(np.uint16)


def _formula(digitizer: str, constants: str) -> tuple[str, float, float]:
    if constants not in OD_CONSTANTS:
        raise ConfigError(f"optical density constants {constants!r}: expected one of {name_list(OD_CONSTANTS)}")
    if digitizer not in OD_CONSTANTS[constants]:
        raise ConfigError(f"digitiser {digitizer!r}: expected one of {name_list(DIGITIZERS)}")
    return OD_CONSTANTS[constants][digitizer]


# ---------------------------------------------------------------- the .OVERLAY annotations
@dataclass
class Outline:
    """An outline's polygon (n, 2) of (x, y) pixel centres in the image, clipped to it; ``clipped`` counts
    the vertices that lay outside and were moved to the border."""

    kind: str            # BOUNDARY or CORE
    points: np.ndarray
    clipped: int = 0


@dataclass
class Abnormality:
    """One annotated finding of a view."""

    number: int
    lesion_types: list[str]
    assessment: int
    subtlety: int | None
    pathology: str
    outlines: list[Outline]

    @property
    def boundary(self) -> Outline:
        return next(o for o in self.outlines if o.kind == "BOUNDARY")

    @property
    def is_mass(self) -> bool:
        return any(t.startswith("MASS") for t in self.lesion_types)

    @property
    def is_calcification(self) -> bool:
        return any(t.startswith("CALCIFICATION") for t in self.lesion_types)


def chain_outline(x: int, y: int, codes: list[int] | np.ndarray) -> np.ndarray:
    """The (x, y) pixels an outline visits: its start, then one step per chain code."""
    codes = np.asarray(codes, dtype=np.int64)
    steps = CHAIN_STEPS[codes] if codes.size else np.zeros((0, 2), dtype=np.int64)
    return np.vstack([[x, y], np.array([x, y]) + np.cumsum(steps, axis=0)])


def chain_codes(points: np.ndarray) -> list[int]:
    """The chain codes of a path of 8-connected pixels (the inverse of :func:`chain_outline`)."""
    steps = np.diff(np.asarray(points, dtype=np.int64), axis=0)
    try:
        return [_DIRECTION_OF[tuple(step)] for step in steps.tolist()]
    except KeyError as exc:
        raise ValueError(f"not an 8-connected step: {exc.args[0]}") from exc


def trace_boundary(mask: np.ndarray) -> np.ndarray:
    """The outer boundary of a mask's first region (in raster order) as a closed 8-connected path of (x, y)
    pixels, traced clockwise from its top-left pixel (Moore-neighbour tracing; the start is repeated at the end).
    Its chain codes (:func:`chain_codes`) are what an ``.OVERLAY`` outline holds."""
    mask = np.asarray(mask, dtype=bool)
    found = np.argwhere(mask)
    if not found.size:
        raise ValueError("an empty mask has no boundary")
    start = (int(found[0][1]), int(found[0][0]))  # (x, y): the first pixel in raster order

    def inside(x: int, y: int) -> bool:
        return 0 <= y < mask.shape[0] and 0 <= x < mask.shape[1] and bool(mask[y, x])

    path, point, back = [start], start, 6  # the pixel to the left of the start is outside
    first_state = None
    while True:
        for turn in range(1, 9):
            direction = (back + turn) % 8
            dx, dy = CHAIN_STEPS[direction]
            if inside(point[0] + dx, point[1] + dy):
                break
        else:
            return np.array(path, dtype=np.int64)  # a single pixel
        state = (point, direction)
        if state == first_state:
            return np.array(path, dtype=np.int64)
        first_state = first_state or state
        previous = CHAIN_STEPS[(direction - 1) % 8]  # the last outside neighbour seen, relative to ``point``
        point = (point[0] + int(dx), point[1] + int(dy))
        back = _DIRECTION_OF[(int(previous[0] - dx), int(previous[1] - dy))]
        path.append(point)


def parse_overlay(path: str | Path, shape: tuple[int, int]) -> list[Abnormality]:
    """The abnormalities of an ``.OVERLAY`` file, outlines clipped to an image of ``shape`` (rows, cols)."""
    path = Path(path)
    try:
        lines = [line.strip() for line in path.read_text(encoding="ascii", errors="replace").splitlines()]
    except OSError as exc:
        raise DataError(path, f"cannot read the overlay: {exc}") from exc
    lines = [line for line in lines if line]
    if not lines or not lines[0].startswith("TOTAL_ABNORMALITIES"):
        raise DataError(path, "does not start with TOTAL_ABNORMALITIES")
    total = _int_field(path, lines[0], "TOTAL_ABNORMALITIES")
    abnormalities, i = [], 1
    while i < len(lines):
        if not lines[i].startswith("ABNORMALITY"):
            raise DataError(path, f"expected ABNORMALITY, found {lines[i][:40]!r}")
        abnormality, i = _parse_abnormality(path, lines, i, shape)
        abnormalities.append(abnormality)
    if len(abnormalities) != total:
        raise DataError(path, f"TOTAL_ABNORMALITIES says {total}, the file holds {len(abnormalities)}")
    return abnormalities


def _parse_abnormality(path: Path, lines: list[str], i: int, shape) -> tuple[Abnormality, int]:
    number = _int_field(path, lines[i], "ABNORMALITY")
    i += 1
    values: dict[str, str] = {}
    lesion_types: list[str] = []
    outlines: list[Outline] = []
    while i < len(lines) and not lines[i].startswith("ABNORMALITY"):
        key, _, value = lines[i].partition(" ")
        if key in ("BOUNDARY", "CORE"):
            if i + 1 >= len(lines):
                raise DataError(path, f"abnormality {number}: {key} without its chain-code line")
            outlines.append(_parse_outline(path, number, key, lines[i + 1], shape))
            i += 2
            continue
        if key == "LESION_TYPE":
            lesion_types.append(value.strip())
        else:
            values[key] = value.strip()
        i += 1
    for key in ("ASSESSMENT", "PATHOLOGY", "TOTAL_OUTLINES"):
        if key not in values:
            raise DataError(path, f"abnormality {number} has no {key} line")
    assessment = _int_field(path, f"ASSESSMENT {values['ASSESSMENT']}", "ASSESSMENT")
    if not 0 <= assessment <= 5:
        raise DataError(path, f"abnormality {number}: ASSESSMENT {assessment} is not a BI-RADS category 0-5")
    if not any(o.kind == "BOUNDARY" for o in outlines):
        raise DataError(path, f"abnormality {number} has no BOUNDARY outline")
    subtlety = values.get("SUBTLETY")
    return Abnormality(number=number, lesion_types=lesion_types, assessment=assessment,
                       subtlety=int(subtlety) if subtlety and subtlety.isdigit() else None,
                       pathology=values["PATHOLOGY"].split()[0] if values["PATHOLOGY"] else "", outlines=outlines), i


def _parse_outline(path: Path, number: int, kind: str, line: str, shape) -> Outline:
    tokens = line.split()
    if len(tokens) < 3 or tokens[-1] != "#":
        raise DataError(path, f"abnormality {number}: the {kind} chain code does not end with '#'")
    try:
        values = [int(t) for t in tokens[:-1]]
    except ValueError as exc:
        raise DataError(path, f"abnormality {number}: the {kind} chain code holds {exc.args[0].split()[-1]}, "
                              "not a number") from exc
    codes = values[2:]
    if any(not 0 <= c <= 7 for c in codes):
        raise DataError(path, f"abnormality {number}: the {kind} chain code holds a direction outside 0-7")
    points = chain_outline(values[0], values[1], codes)
    rows, cols = shape
    inside = (points[:, 0] >= 0) & (points[:, 0] < cols) & (points[:, 1] >= 0) & (points[:, 1] < rows)
    if not inside.any():
        raise DataError(path, f"abnormality {number}: the {kind} outline lies wholly outside the "
                              f"{rows} x {cols} image")
    clipped = np.column_stack([np.clip(points[:, 0], 0, cols - 1), np.clip(points[:, 1], 0, rows - 1)])
    return Outline(kind=kind, points=clipped, clipped=int((~inside).sum()))


def _int_field(path: Path, line: str, key: str) -> int:
    value = line[len(key):].strip().split()
    if not value or not value[0].lstrip("-").isdigit():
        raise DataError(path, f"{key} is not followed by a number: {line!r}")
    return int(value[0])


def format_overlay(abnormalities: list[Abnormality]) -> str:
    """An ``.OVERLAY`` text as the DDSM writes them (the stand-in's annotations); outlines as chain codes."""
    lines = [f"TOTAL_ABNORMALITIES {len(abnormalities)}"]
    for a in abnormalities:
        lines.append(f"ABNORMALITY {a.number}")
        lines += [f"LESION_TYPE {t}" for t in a.lesion_types]
        lines += [f"ASSESSMENT {a.assessment}", f"SUBTLETY {a.subtlety if a.subtlety is not None else 3}",
                  f"PATHOLOGY {a.pathology}", f"TOTAL_OUTLINES {len(a.outlines)}"]
        for outline in a.outlines:
            x, y = (int(v) for v in outline.points[0])
            lines += [outline.kind, " ".join([str(x), str(y), *map(str, chain_codes(outline.points)), "#"])]
    return "\n".join(lines) + "\n"


def outline_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The pixels inside a closed outline (its own pixels included), as a boolean (rows, cols) mask."""
    from PIL import Image, ImageDraw

    canvas = Image.new("1", (shape[1], shape[0]), 0)
    xy = [(float(x), float(y)) for x, y in np.asarray(points)]
    if len(xy) >= 3:
        ImageDraw.Draw(canvas).polygon(xy, fill=1, outline=1)
    else:
        ImageDraw.Draw(canvas).point(xy, fill=1)
    return np.asarray(canvas, dtype=bool)


# ---------------------------------------------------------------- case folders
@dataclass(frozen=True)
class View:
    """One view of a case: its header line and files (``overlay`` None for a view without findings)."""

    case: str            # the case name, e.g. D-4606-1: one patient
    case_type: str       # normals, benigns, cancers or benign_without_callbacks
    header: ViewHeader
    digitizer: str       # the optical-density formula's digitiser key
    image: Path
    overlay: Path | None

    @property
    def name(self) -> str:
        return self.header.view

    @property
    def side(self) -> str:
        return self.header.view.split("_")[0]

    @property
    def projection(self) -> str:
        return self.header.view.split("_")[1]


def case_folders(root: str | Path) -> list[Path]:
    """Every ``cases/<type>/<volume>/case<NNNN>/`` folder under ``root``, sorted."""
    root = Path(root)
    return sorted(p for case_type in CASE_TYPES for p in (root / "cases" / case_type).glob("*/case*") if p.is_dir())


def read_case(folder: str | Path) -> list[View]:
    """The views of one case folder, their files checked to be there; a folder without its ``.ics`` header, or a
    view without its image or announced overlay, is an error naming what is missing."""
    folder = Path(folder)
    headers = sorted(folder.glob("*.ics"))
    if len(headers) != 1:
        found = "none" if not headers else name_list(h.name for h in headers)
        raise DataError(folder, f"a DDSM case folder holds one .ics header (like D-4606-1.ics); found {found}")
    header = parse_ics(headers[0])
    case_type = folder.parent.parent.name
    if case_type not in CASE_TYPES:
        raise DataError(folder, f"not under cases/<{'|'.join(CASE_TYPES)}>/<volume>/")
    views = []
    for name, view_header in sorted(header.views.items()):
        image = folder / f"{header.file_stem()}.{name}.LJPEG"
        if not image.is_file():
            raise DataError(image, f"missing: {header.path} lists view {name}")
        overlay = folder / f"{header.file_stem()}.{name}.OVERLAY"
        if view_header.overlay and not overlay.is_file():
            raise DataError(overlay, f"missing: {header.path} marks view {name} OVERLAY")
        views.append(View(case=header.name, case_type=case_type, header=view_header,
                          digitizer=header.digitizer_key, image=image, overlay=overlay if view_header.overlay else None))
    return views


def read_view(view: View, constants: str = "calibration",
              clip: tuple[float, float] = (0.05, 3.6)) -> tuple[np.ndarray, list[Abnormality]]:
    """A view's optical density image (float32, rows x cols) and its abnormalities (none without an overlay)."""
    from medrepro.studies.mammo_tissue.readers.ljpeg import read_ljpeg

    h = view.header
    grey = read_ljpeg(view.image, h.rows, h.cols, h.bits)
    abnormalities = parse_overlay(view.overlay, (h.rows, h.cols)) if view.overlay is not None else []
    return optical_density(grey, view.digitizer, constants, clip), abnormalities
