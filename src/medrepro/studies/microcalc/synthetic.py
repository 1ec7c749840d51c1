"""A synthetic INbreast, written in its native layout from the shared 3-D breast model.

The stand-in lets the study run without INbreast (distributed on request) and keeps what makes the paper's four
patch classes hard:

* **Microcalcifications as the phantom draws them**: rigid spheres of 0.1-1 mm
  (:func:`medrepro.shared.breast_phantom.single_calcification`) inside a compressed 3-D breast with
  fibroglandular texture, ducts and vessels, projected with the detector blur and the film curve, so their
  borders are soft (partial volume: the C2 band's difficulty) and the smallest barely rise above the tissue.
  Clusters (6-15 calcifications within 1.5-3.5 mm of a centre in 3-D: far more than 5 per cm^2 in the image),
  isolated ones (at least 10 mm from any other) and ones about 1-3 mm inside the skin line, where the image
  passes from breast to background (the paper's Fig. 7).
* **Vascular calcifications as "tram tracks"**: winding vessels drawn on the image as two parallel thin bright
  lines (walls 0.1-0.25 mm, 0.8-1.8 mm apart, with gaps) over the vessel's faint soft tissue, 12-30 mm long.
  They are calcium like the rest but never annotated: the study segments microcalcifications only.
* **Dense and fatty breasts** (the phantom's glandular fraction 0.65-0.95 or 0.03-0.3; ACR 1-4 in the table).
* **Digital and digitised film**: digital images have a little white detector noise and 14 bits; digitised
  films the phantom's film grain, the scanner's white noise, screen-dust specks as bright and small as
  calcifications (unannotated) and 12 bits. The DICOM's ``ConversionType`` tells them apart: ``DF`` (digitised
  film) or ``DI`` (digital interface), which :func:`medrepro.studies.microcalc.readers.dicom_spacing_and_acquisition`
  reads back.

Each image is a window of ``image_size`` pixels of ``pixel_mm`` (default 600 x 400 at 0.1 mm, a 6 x 4 cm field;
the paper's data are 0.05 mm) cut from one view (CC or MLO) of its own breast: the front of the breast with the
nipple, the skin line and background, as a detail of a mammogram. The breast is projected twice: coarsely, to
find the window and where each 3-D position lands in it, then at full resolution with the calcifications.

What :func:`generate_inbreast` writes, as INbreast has it (:mod:`.readers.inbreast`):

* ``AllDICOMs/<FileName>_<16 hex>_MG_<L|R>_<CC|ML>_ANON.dcm``: MONOCHROME2, bright = dense, ``PixelSpacing``
  (and ``ImagerPixelSpacing`` for digital images), ``ConversionType``, laterality and view;
* ``INbreast.csv``, ``;``-separated with the published columns, ending with an all-empty row as the real file;
* ``AllXML/<FileName>.xml`` for images with calcifications: Apple XML plists with a ``Calcification`` ROI per
  calcification, a single point (x = column) for most, a closed contour around some of 0.3 mm and more, and a
  ``Cluster`` contour (a region, not painted) around each cluster; a tenth of the images by default has no
  calcification and no XML file, as INbreast's normal images;
* :data:`TRUTH_FILE`, what no reader may use: every structure's kind, position (row, col in the image), size,
  rendered pixels, annotation and distance to the skin line, vessels' centre lines;
* ``MANIFEST.sha256`` over everything above.

Everything random comes from generators seeded by ``seed``: the table's draws from ``seed``, each image's from
``(seed, index)``, so the same arguments write the same bytes whatever ``workers`` is.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from medrepro.data.atomic import write_csv
from medrepro.errors import ConfigError, DataError
from medrepro.pipeline.parallel import ordered_map
from medrepro.provenance.pinning import MANIFEST_FILE, write_manifest
from medrepro.shared import breast_phantom
from medrepro.shared.dicom import write_mammogram
from medrepro.studies.microcalc.readers import DIGITAL, FILM, inbreast

log = logging.getLogger(__name__)

TRUTH_FILE = "synthetic_truth.csv"
TRUTH_COLUMNS = ["file_name", "acquisition", "density", "acr", "structure", "group", "centre_row", "centre_col",
                 "diameter_mm", "separation_mm", "length_mm", "pixels", "annotation", "skin_distance_mm", "path_px"]
#: Kinds of structure in the truth table; only the first three are annotated.
STRUCTURES = ("cluster", "isolated", "near_skin", "vascular", "dust")
DEFAULT_IMAGE_SIZE = (600, 400)
DEFAULT_PIXEL_MM = 0.1
BITS_STORED = {DIGITAL: 14, FILM: 12}
CONVERSION_TYPE = {DIGITAL: "DI", FILM: "DF"}

VOXEL_MM = 2.0              # the glandular texture's grid: fine enough under the window, fast
SCOUT_FACTOR = 4            # the coarse projection's pixels per side
CANDIDATES = 30000          # 3-D positions tried per image
DIAMETER_RANGE_MM = (0.1, 1.0)
CLUSTER_SIZE = (6, 15)
CLUSTER_RADIUS_MM = (1.5, 3.5)
ISOLATION_MM = 10.0         # an isolated calcification's distance to any other
SKIN_BAND_MM = (0.5, 3.0)   # how far inside the skin line a near-skin calcification lies
CONTOUR_MIN_DIAMETER_MM = 0.3
CONTOUR_MIN_RADIUS_PX = 1.5
CONTOUR_FRACTION = 0.5      # of calcifications large enough, drawn as a contour rather than a point
# The phantom's film curve around its own calcifications, as a transmission law D' = 1 - (1 - D) exp(-g A) for
# an added line integral A (1/mm x mm): g measured on projections with and without a calcification.
FILM_GAIN = 1.6
# the lumen's soft tissue at half the phantom's own vessel contrast: the walls, not the lumen, make a tram track
VESSEL_EXCESS_MU = 0.5 * (breast_phantom.MU_GLAND + 0.005 - breast_phantom.MU_FAT)
WALL_EXCESS_MU = breast_phantom.MU_CALCIFICATION - breast_phantom.MU_FAT


@dataclass(frozen=True)
class Noise:
    """Noise in film-density units (0 air .. 1 dense): a digital image's white detector noise; a digitised film's
    grain (the phantom's, spatially correlated), scanner white noise and screen-dust specks per cm^2."""

    digital_sd: float = 0.004
    film_grain_sd: float = 0.02
    scanner_sd: float = 0.008
    dust_per_cm2: float = 0.4


@dataclass(frozen=True)
class _Plan:
    """What the top-level draw fixes for one image."""

    index: int
    file_name: str
    key: str
    patient: str
    age: int
    date: str
    laterality: str
    view: str
    acquisition: str
    dense: bool
    calcifications: bool
    vessels: bool


@dataclass(frozen=True)
class _Calcification:
    centre_mm: np.ndarray   # breast frame
    diameter_mm: float
    structure: str
    group: int


# ---------------------------------------------------------------- arguments and the table's draw


def _check_arguments(n_images, image_size, pixel_mm, fractions: dict[str, float]) -> tuple[int, int]:
    if isinstance(n_images, bool) or not isinstance(n_images, (int, np.integer)) or n_images < 1:
        raise ConfigError(f"synthetic INbreast: n_images={n_images!r} must be a whole number >= 1")
    if not (isinstance(pixel_mm, (int, float)) and 0.02 <= float(pixel_mm) <= 0.5):
        raise ConfigError(f"synthetic INbreast: pixel_mm={pixel_mm!r} must lie in [0.02, 0.5]")
    size = tuple(image_size)
    if len(size) != 2 or any(int(n) != n for n in size) or min(size) * pixel_mm < 20 or max(size) > 20000:
        raise ConfigError(f"synthetic INbreast: image_size={image_size!r} must be (rows, cols) of at least 20 mm "
                          f"each at {pixel_mm} mm per pixel, at most 20000 pixels")
    for name, value in fractions.items():
        if not 0.0 <= float(value) <= 1.0:
            raise ConfigError(f"synthetic INbreast: {name}={value!r} must lie in [0, 1]")
    return int(size[0]), int(size[1])


def _check_empty(raw_root: Path) -> None:
    if raw_root.exists() and (not raw_root.is_dir() or any(raw_root.iterdir())):
        raise DataError(raw_root, "is not an empty directory; generate the synthetic INbreast into an empty one "
                                  "(write through medrepro.data.atomic.atomic_dir to replace an old copy)")


def _chosen(rng: np.random.Generator, n: int, fraction: float, candidates: range) -> set[int]:
    """``fraction`` of ``n`` images drawn from ``candidates``; at least one, and one left out, whenever the
    fraction is strictly between 0 and 1 and there is room, so both kinds appear."""
    pool = list(candidates)
    k = int(round(fraction * n))
    if 0 < fraction < 1 and len(pool) >= 2:
        k = min(max(k, 1), len(pool) - 1)
    k = min(k, len(pool))
    return {pool[i] for i in rng.permutation(len(pool))[:k]}


def _file_names(rng: np.random.Generator, n: int) -> list[str]:
    """Distinct 8-digit File Names, as INbreast's."""
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        name = str(int(rng.integers(20_000_000, 54_000_000)))
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _plans(rng: np.random.Generator, n: int, film_fraction: float, normal_fraction: float,
           vessel_fraction: float) -> list[_Plan]:
    """Images four to a patient (right CC, right MLO, left CC, left MLO), digital or film, dense or fatty; the
    first image always has calcifications and vessels, so even a small stand-in shows both."""
    names = _file_names(rng, n)
    keys = [f"{int(v):016x}" for v in rng.integers(0, 2 ** 63, n)]
    films = _chosen(rng, n, film_fraction, range(n))
    dense = _chosen(rng, n, 0.5, range(n))
    normals = _chosen(rng, n, normal_fraction, range(1, n)) if normal_fraction > 0 else set()
    vessels = rng.uniform(size=n) < vessel_fraction
    patients = [(f"{int(rng.integers(0, 2 ** 63)):016x}", int(rng.integers(35, 85)),
                 f"{int(rng.integers(2008, 2011))}{int(rng.integers(1, 13)):02d}") for _ in range((n + 3) // 4)]
    plans = []
    for i in range(n):
        patient, age, date = patients[i // 4]
        plans.append(_Plan(index=i, file_name=names[i], key=keys[i], patient=patient, age=age, date=date,
                           laterality="R" if i % 4 < 2 else "L", view=("CC", "MLO")[i % 2],
                           acquisition=FILM if i in films else DIGITAL, dense=i in dense,
                           calcifications=i not in normals,
                           vessels=bool(vessels[i]) or (i == 0 and vessel_fraction > 0)))
    return plans


# ---------------------------------------------------------------- the breast, its views and the window


@dataclass(frozen=True)
class _Geometry:
    view: str
    angle_deg: float
    thickness_mm: float


def _geometry(rng: np.random.Generator, breast: breast_phantom.Breast, view: str) -> _Geometry:
    """The view's angle and compressed thickness, drawn once so both projections share them."""
    if view == "CC":
        return _Geometry(view, 0.0, breast.thickness_mm)
    return _Geometry(view, float(rng.uniform(45.0, 50.0)), float(breast.thickness_mm * rng.uniform(1.0, 1.15)))


def _project(breast, rng, geometry: _Geometry, shape, pixel_mm: float, film) -> breast_phantom.ProjectedView:
    if geometry.view == "CC":
        return breast_phantom.project_cc(breast, rng, shape, thickness_mm=geometry.thickness_mm, pixel_mm=pixel_mm,
                                         film=film)
    return breast_phantom.project_mlo(breast, rng, shape, angle_deg=geometry.angle_deg,
                                      thickness_mm=geometry.thickness_mm, pixel_mm=pixel_mm, film=film)


def _canvas(breast: breast_phantom.Breast, image_size: tuple[int, int], pixel_mm: float) -> tuple[tuple[int, int], int]:
    """The projected band (rows: the window's; columns: chest wall to past the nipple) and the scout's factor.

    The phantom anchors its columns at the chest wall and centres its rows on the breast's axis, so the band
    through the axis is the cheapest projection that holds the breast's front."""
    rows, cols = image_size
    factor = next(f for f in (SCOUT_FACTOR, 3, 2, 1) if rows // f >= 32 or f == 1)
    _, across_mm = breast_phantom.breast_extent_mm(breast)
    band_rows = int(math.ceil(rows / factor)) * factor
    band_cols = int(math.ceil(max(across_mm / pixel_mm, cols) / factor)) * factor
    return (band_rows, band_cols), factor


def _window(rng: np.random.Generator, scout: breast_phantom.ProjectedView, factor: int,
            image_size: tuple[int, int]) -> tuple[int, int]:
    """The window's top-left corner in the band: the breast's front with background over 15-40 % of the width
    on the nipple side."""
    rows, cols = image_size
    band_rows, band_cols = scout.breast_mask.shape[0] * factor, scout.breast_mask.shape[1] * factor
    columns = np.flatnonzero(scout.breast_mask.any(axis=0))
    background = rng.uniform(0.15, 0.4) * cols
    if not len(columns):
        left = 0.0
    elif scout.params["laterality"] == "R":  # the nipple points left
        left = (columns.min() + 0.5) * factor - 0.5 - background
    else:
        left = (columns.max() + 0.5) * factor - 0.5 + background - cols
    return (band_rows - rows) // 2, int(np.clip(round(left), 0, band_cols - cols))


@dataclass(frozen=True)
class _Field:
    """Where breast-frame points land in the window, and whether breast is there, from the scout view."""

    breast: breast_phantom.Breast
    params: dict                  # the full-resolution band's view parameters (for breast_phantom.map_points)
    inside: np.ndarray            # scout pixels of breast, the muscle left out
    skin_mm: np.ndarray           # scout pixels: distance to the breast's edge (mm)
    factor: int
    origin: np.ndarray            # the window's corner in the band (row, col)
    shape: tuple[int, int]
    margin_px: float

    def locate(self, points_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, col) in the window, whether usable (in the window's margin, on breast), skin distance (mm)."""
        band = breast_phantom.map_points(self.breast, points_mm, self.params)
        local = band - self.origin
        coarse = np.floor((band + 0.5) / self.factor).astype(np.int64)
        coarse = np.clip(coarse, 0, np.array(self.inside.shape) - 1)
        limit = np.array(self.shape) - 1 - self.margin_px
        within = np.all((local >= self.margin_px) & (local <= limit), axis=1)
        usable = within & self.inside[coarse[:, 0], coarse[:, 1]]
        return local, usable, self.skin_mm[coarse[:, 0], coarse[:, 1]]


def _field(breast, scout: breast_phantom.ProjectedView, factor: int, origin, image_size, pixel_mm: float) -> _Field:
    band = [scout.breast_mask.shape[0] * factor, scout.breast_mask.shape[1] * factor]
    params = {**scout.params, "shape": band, "pixel_mm": pixel_mm}  # same field of view, finer pixels
    inside = scout.breast_mask & ~scout.muscle_mask
    coarse_mm = factor * pixel_mm
    skin = np.clip(ndi.distance_transform_edt(scout.breast_mask) - 0.5, 0.0, None) * coarse_mm
    # margin: room for a contour of the largest calcification and the reader's disc
    margin = math.ceil((1.3 * DIAMETER_RANGE_MM[1] / 2 + 0.2) / pixel_mm) + 2
    return _Field(breast, params, inside, skin, factor, np.asarray(origin, float), tuple(image_size), margin)


# ---------------------------------------------------------------- calcifications


def _diameters(rng: np.random.Generator, n: int) -> np.ndarray:
    """Log-normal around 0.3 mm, clipped to 0.1-1 mm: most microcalcifications are a few tenths of a mm."""
    return np.clip(rng.lognormal(math.log(0.3), 0.5, n), *DIAMETER_RANGE_MM)


def _pick(rng, local, skin, taken: list[np.ndarray], pixel_mm: float, skin_range: tuple[float, float],
          gap_mm: float, edge_px: float = 0.0, shape: tuple[int, int] | None = None) -> int | None:
    """A random candidate within ``skin_range`` of the skin line, ``gap_mm`` from every taken position and
    ``edge_px`` inside the window; None if there is none."""
    ok = (skin >= skin_range[0]) & (skin <= skin_range[1])
    if edge_px > 0 and shape is not None:
        ok &= np.all((local >= edge_px) & (local <= np.array(shape) - 1 - edge_px), axis=1)
    if taken:
        nearest, _ = cKDTree(np.asarray(taken)).query(local)
        ok &= nearest * pixel_mm >= gap_mm
    indices = np.flatnonzero(ok)
    return int(indices[rng.integers(len(indices))]) if len(indices) else None


def _candidates(rng: np.random.Generator, field: _Field) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Breast-frame points in front of the chest wall (the phantom's envelope, its nipple aside) that land on
    breast in the window: (points, window positions, skin distances)."""
    breast = field.breast
    points = np.column_stack([rng.uniform(1.0, breast.depth_mm, CANDIDATES),
                              rng.uniform(-breast.radius_y_mm, breast.radius_y_mm, CANDIDATES),
                              rng.uniform(-breast.radius_z_mm, breast.radius_z_mm, CANDIDATES)])
    envelope = ((points[:, 0] / breast.depth_mm) ** breast.profile + (points[:, 1] / breast.radius_y_mm) ** 2
                + (points[:, 2] / breast.radius_z_mm) ** 2) < 1.0
    points = points[envelope]
    local, usable, skin = field.locate(points)
    return points[usable], local[usable], skin[usable]


def _cluster(rng, field: _Field, candidates, taken: list[np.ndarray], group: int, pixel_mm: float
             ) -> list[tuple[_Calcification, np.ndarray]]:
    """6-15 calcifications in a ball of 1.5-3.5 mm around a candidate deep enough in the breast; those that land
    off the breast or the window are dropped, and a cluster left with fewer than 6 is drawn again."""
    points, local, skin = candidates
    radius = float(rng.uniform(*CLUSTER_RADIUS_MM))
    n = int(rng.integers(CLUSTER_SIZE[0], CLUSTER_SIZE[1] + 1))
    for _ in range(20):
        centre = _pick(rng, local, skin, taken, pixel_mm, (radius + 4.0, np.inf), radius + ISOLATION_MM,
                       edge_px=2 * radius / pixel_mm, shape=field.shape)
        if centre is None:
            return []
        offsets = rng.standard_normal((n, 3))
        offsets *= (radius * rng.uniform(0, 1, n) ** (1 / 3) / np.linalg.norm(offsets, axis=1))[:, None]
        particles = points[centre] + offsets
        where, usable, _ = field.locate(particles)
        if usable.sum() >= CLUSTER_SIZE[0]:
            diameters = _diameters(rng, n)
            return [(_Calcification(particles[i], float(diameters[i]), "cluster", group), where[i])
                    for i in np.flatnonzero(usable)]
    return []


def _place_calcifications(rng, field: _Field, pixel_mm: float) -> list[_Calcification]:
    """One or two clusters, one to three isolated calcifications and one or two just inside the skin line."""
    candidates = _candidates(rng, field)
    _, local, skin = candidates
    placed: list[_Calcification] = []
    taken: list[np.ndarray] = []
    for group in range(int(rng.integers(1, 3))):
        for calcification, where in _cluster(rng, field, candidates, taken, group, pixel_mm):
            placed.append(calcification)
            taken.append(where)
    coarse_mm = field.factor * pixel_mm  # the scout's skin distances are this coarse: keep clear of the edge
    kinds = [("isolated", (4.0, np.inf))] * int(rng.integers(1, 4)) + \
            [("near_skin", (SKIN_BAND_MM[0] + coarse_mm, SKIN_BAND_MM[1]))] * int(rng.integers(1, 3))
    for structure, skin_range in kinds:
        chosen = _pick(rng, local, skin, taken, pixel_mm, skin_range, ISOLATION_MM)
        if chosen is None:
            continue
        diameter = float(rng.uniform(0.15, 1.0)) if structure == "isolated" else float(_diameters(rng, 1)[0])
        placed.append(_Calcification(candidates[0][chosen], diameter, structure, -1))
        taken.append(local[chosen])
    return placed


def _contour(rng: np.random.Generator, row: float, col: float, radius_px: float) -> np.ndarray:
    """A hand-drawn closed contour around a calcification: 8-12 vertices a little outside its edge; (x, y)."""
    k = int(rng.integers(8, 13))
    angles = (np.arange(k) + rng.uniform(-0.3, 0.3, k)) * 2 * np.pi / k
    reach = radius_px * rng.uniform(1.0, 1.3, k) + 0.5
    return np.column_stack([col + reach * np.cos(angles), row + reach * np.sin(angles)])


def _cluster_outline(rows_cols: np.ndarray, pixel_mm: float, shape: tuple[int, int]) -> np.ndarray:
    """INbreast's ``Cluster`` ROI: a 16-gon 1 mm outside the cluster's calcifications, kept on the image; (x, y)."""
    centre = rows_cols.mean(axis=0)
    reach = np.linalg.norm(rows_cols - centre, axis=1).max() + 1.0 / pixel_mm
    angles = np.arange(16) * 2 * np.pi / 16
    x = np.clip(centre[1] + reach * np.cos(angles), 0, shape[1] - 1)
    y = np.clip(centre[0] + reach * np.sin(angles), 0, shape[0] - 1)
    return np.column_stack([x, y])


# ---------------------------------------------------------------- vessels ("tram tracks") and dust


@dataclass(frozen=True)
class _Track:
    path: np.ndarray        # (n, 2) centre line (row, col) in the window
    separation_mm: float
    wall_mm: float
    length_mm: float


def _tube_chords(shape: tuple[int, int], points: np.ndarray, radius_px: float, supersample: int = 4) -> np.ndarray:
    """Per pixel, the mean chord (px) through a tube of ``radius_px`` around densely sampled points (row, col)."""
    out = np.zeros(shape)
    if not len(points):
        return out
    tree = cKDTree(points)
    low = np.maximum(np.floor(points.min(axis=0) - radius_px - 1).astype(int), 0)
    high = np.minimum(np.ceil(points.max(axis=0) + radius_px + 1).astype(int), np.array(shape) - 1)
    rr, cc = np.mgrid[low[0]:high[0] + 1, low[1]:high[1] + 1]
    pixels = np.column_stack([rr.ravel(), cc.ravel()])
    distance, _ = tree.query(pixels, distance_upper_bound=radius_px + 1.0)
    near = pixels[np.isfinite(distance)]
    if not len(near):
        return out
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    grid = np.stack(np.meshgrid(offsets, offsets, indexing="ij"), axis=-1).reshape(-1, 2)
    sub = (near[:, None, :] + grid[None]).reshape(-1, 2)
    d, _ = tree.query(sub)
    chords = 2.0 * np.sqrt(np.clip(radius_px ** 2 - d ** 2, 0.0, None))
    out[near[:, 0], near[:, 1]] = chords.reshape(len(near), -1).mean(axis=1)
    return out


def _winding_path(rng, start: np.ndarray, length_px: float, step_px: float = 0.25) -> np.ndarray:
    """A winding, unbranched centre line: a straight course with a sinusoidal meander of 5-12 % of its length."""
    n = int(math.ceil(length_px / step_px)) + 1
    t = np.linspace(0.0, 1.0, n)[:, None]
    theta = rng.uniform(0, 2 * np.pi)
    along, across = np.array([math.sin(theta), math.cos(theta)]), np.array([math.cos(theta), -math.sin(theta)])
    amplitude, cycles, phase = rng.uniform(0.05, 0.12) * length_px, rng.uniform(0.8, 2.0), rng.uniform(0, 2 * np.pi)
    meander = amplitude * (np.sin(2 * np.pi * cycles * t + phase) - math.sin(phase))
    return start + t * length_px * along + meander * across


def _walls(path: np.ndarray, half_separation_px: float) -> tuple[np.ndarray, np.ndarray]:
    tangent = np.gradient(path, axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
    normal = np.column_stack([-tangent[:, 1], tangent[:, 0]])
    return path + half_separation_px * normal, path - half_separation_px * normal


def _gapped(rng, wall: np.ndarray, pixel_mm: float) -> np.ndarray:
    """The wall's points with gaps: calcified runs of 2-8 mm, breaks of 0.3-1.5 mm, as real tracks are broken."""
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(wall, axis=0), axis=1))]) * pixel_mm
    keep = np.zeros(len(wall), dtype=bool)
    position, calcified = -rng.uniform(0, 4.0), True
    while position < arc[-1]:
        run = rng.uniform(2.0, 8.0) if calcified else rng.uniform(0.3, 1.5)
        if calcified:
            keep |= (arc >= position) & (arc < position + run)
        position += run
        calcified = not calcified
    return wall[keep]


def _tram_track(rng, inside: np.ndarray, skin_mm: np.ndarray, avoid: list[tuple[np.ndarray, float]],
                pixel_mm: float) -> _Track | None:
    """A vessel wholly on the breast, clear of every calcification (its annotation disc included)."""
    rows, cols = inside.shape
    starts = np.argwhere(skin_mm >= 3.0)
    if not len(starts):
        return None
    for _ in range(30):
        length_mm, half_sep_mm, wall_mm = rng.uniform(12, 30), rng.uniform(0.4, 0.9), rng.uniform(0.1, 0.25)
        start = starts[rng.integers(len(starts))].astype(float)
        path = _winding_path(rng, start, length_mm / pixel_mm)
        if np.any(path < 2) or np.any(path[:, 0] > rows - 3) or np.any(path[:, 1] > cols - 3):
            continue
        index = np.round(path).astype(int)
        if not inside[index[:, 0], index[:, 1]].all() or skin_mm[index[:, 0], index[:, 1]].min() < half_sep_mm + 0.5:
            continue
        if avoid:
            distances = cKDTree(path).query(np.array([where for where, _ in avoid]))[0] * pixel_mm
            clearance = np.array([reach for _, reach in avoid]) + half_sep_mm + wall_mm / 2 + 0.5
            if np.any(distances < clearance):
                continue
        return _Track(path, 2 * half_sep_mm, wall_mm, length_mm)
    return None


def _draw_track(rng, image: np.ndarray, track: _Track, pixel_mm: float) -> np.ndarray:
    """Add the vessel's soft tissue and its two calcified walls to ``image`` (in place); the walls' pixels."""
    half = track.separation_mm / 2 / pixel_mm
    walls = sum(_tube_chords(image.shape, _gapped(rng, wall, pixel_mm), track.wall_mm / 2 / pixel_mm)
                for wall in _walls(track.path, half))
    lumen = _tube_chords(image.shape, track.path, half)
    attenuation = (WALL_EXCESS_MU * walls + VESSEL_EXCESS_MU * lumen) * pixel_mm
    _add_attenuation(image, attenuation, pixel_mm)
    return walls > 0


def _add_attenuation(image: np.ndarray, attenuation: np.ndarray, pixel_mm: float, blur: bool = True) -> None:
    """Film density after adding a line integral, through the phantom's detector blur and :data:`FILM_GAIN`."""
    sigma = breast_phantom.PSF_SIGMA_MM / pixel_mm
    if blur and sigma >= 0.3:
        attenuation = ndi.gaussian_filter(attenuation, sigma)
    image[:] = 1.0 - (1.0 - image) * np.exp(-FILM_GAIN * attenuation)


def _dust(rng, image: np.ndarray, per_cm2: float, pixel_mm: float) -> list[tuple[int, int]]:
    """Screen-dust specks of a pixel or two, sharp and as bright as calcifications, anywhere on the film."""
    rows, cols = image.shape
    n = int(rng.poisson(per_cm2 * rows * cols * pixel_mm ** 2 / 100.0))
    specks = np.zeros(image.shape)
    where = []
    for _ in range(n):
        row, col = int(rng.integers(rows - 1)), int(rng.integers(cols - 1))
        height, width = (1, 1) if rng.uniform() < 0.6 else ((1, 2) if rng.uniform() < 0.5 else (2, 1))
        specks[row:row + height, col:col + width] += rng.uniform(0.2, 0.6)
        where.append((row, col))
    _add_attenuation(image, specks, pixel_mm, blur=False)
    return where


# ---------------------------------------------------------------- one image


def _acr(density: float) -> int:
    """ACR density 1 (fatty) .. 4 (extremely dense) from the phantom's glandular fraction."""
    return int(np.clip(1 + math.floor(density * 4), 1, 4))


def _stored(image: np.ndarray, bits: int) -> np.ndarray:
    return np.round(np.clip(image, 0.0, 1.0) * ((1 << bits) - 1)).astype(np.uint16)


def _path_text(path: np.ndarray, pixel_mm: float) -> str:
    """A centre line as ``row col;row col;...`` every millimetre (and its end)."""
    step = max(int(round(1.0 / pixel_mm / 0.25)), 1)
    points = np.vstack([path[::step], path[-1:]])
    return ";".join(f"{r:.1f} {c:.1f}" for r, c in points)


def _calcification_rows(rng, view, placed, origin, shape, skin_mm, pixel_mm, common) -> tuple[list, list]:
    """Truth rows and XML ROIs of the rendered calcifications (ids 1.. in ``placed`` order)."""
    rows, rois, by_group = [], [], {}
    window = (slice(origin[0], origin[0] + shape[0]), slice(origin[1], origin[1] + shape[1]))
    for lesion_id, calcification in enumerate(placed, start=1):
        row, col = np.array(view.lesion_centres_px[lesion_id]) - origin
        radius_px = calcification.diameter_mm / 2 / pixel_mm
        contour = (calcification.diameter_mm >= CONTOUR_MIN_DIAMETER_MM and radius_px >= CONTOUR_MIN_RADIUS_PX
                   and rng.uniform() < CONTOUR_FRACTION)
        points = _contour(rng, row, col, radius_px) if contour else np.array([[col, row]])
        rois.append((inbreast.CALCIFICATION, points))
        if calcification.group >= 0:
            by_group.setdefault(calcification.group, []).append((row, col))
        here = skin_mm[int(round(row)), int(round(col))]
        rows.append({**common, "structure": calcification.structure, "group": calcification.group,
                     "centre_row": row, "centre_col": col, "diameter_mm": calcification.diameter_mm,
                     "pixels": int(view.calcification_masks[lesion_id][window].sum()),
                     "annotation": "contour" if contour else "point", "skin_distance_mm": here})
    for group, members in sorted(by_group.items()):
        rois.append(("Cluster", _cluster_outline(np.array(members), pixel_mm, shape)))
    return rows, rois


def _image(root: Path, seed: int, plan: _Plan, image_size: tuple[int, int], pixel_mm: float,
           noise: Noise) -> tuple[dict, list[dict]]:
    """One image's DICOM and XML; its table row and truth rows."""
    rng = np.random.default_rng([seed, plan.index])
    density = float(rng.uniform(0.65, 0.95) if plan.dense else rng.uniform(0.03, 0.3))
    breast = breast_phantom.make_breast(rng, laterality=plan.laterality, density=density, n_masses=0, n_clusters=0,
                                        n_single=0, n_vascular=0, voxel_mm=VOXEL_MM)
    geometry = _geometry(rng, breast, plan.view)
    band, factor = _canvas(breast, image_size, pixel_mm)
    scout = _project(breast, rng, geometry, (band[0] // factor, band[1] // factor), pixel_mm * factor, None)
    origin = np.array(_window(rng, scout, factor, image_size))
    field = _field(breast, scout, factor, origin, image_size, pixel_mm)
    placed = _place_calcifications(rng, field, pixel_mm) if plan.calcifications else []
    lesions = [breast_phantom.single_calcification(i, c.centre_mm, c.diameter_mm) for i, c in enumerate(placed, 1)]
    film = breast_phantom.FilmEffects(noise_sd=noise.film_grain_sd, border=False, label=False) \
        if plan.acquisition == FILM else None
    view = _project(replace(breast, lesions=lesions), rng, geometry, band, pixel_mm, film)

    window = (slice(origin[0], origin[0] + image_size[0]), slice(origin[1], origin[1] + image_size[1]))
    image = view.image[window].astype(np.float64)
    inside = view.breast_mask[window] & ~view.muscle_mask[window]
    skin_mm = (np.clip(ndi.distance_transform_edt(view.breast_mask) - 0.5, 0.0, None) * pixel_mm)[window]
    common = {"file_name": plan.file_name, "acquisition": plan.acquisition, "density": density, "acr": _acr(density)}
    truth, rois = _calcification_rows(rng, view, placed, origin, image_size, skin_mm, pixel_mm, common)
    # each calcification's reach: its hand-drawn contour, or the reader's disc around a point
    avoid = [(np.array([r["centre_row"], r["centre_col"]]), 1.3 * r["diameter_mm"] / 2 + 3 * pixel_mm) for r in truth]
    for number in range(int(rng.integers(1, 3)) if plan.vessels else 0):
        track = _tram_track(rng, inside, skin_mm, avoid, pixel_mm)
        if track is None:
            continue
        walls = _draw_track(rng, image, track, pixel_mm)
        middle = track.path[len(track.path) // 2]
        truth.append({**common, "structure": "vascular", "group": number, "centre_row": middle[0],
                      "centre_col": middle[1], "diameter_mm": track.wall_mm, "separation_mm": track.separation_mm,
                      "length_mm": track.length_mm, "pixels": int(walls.sum()), "annotation": "none",
                      "skin_distance_mm": skin_mm[int(round(middle[0])), int(round(middle[1]))],
                      "path_px": _path_text(track.path, pixel_mm)})
    if plan.acquisition == FILM:
        for row, col in _dust(rng, image, noise.dust_per_cm2, pixel_mm):
            truth.append({**common, "structure": "dust", "group": -1, "centre_row": row, "centre_col": col,
                          "annotation": "none", "skin_distance_mm": skin_mm[row, col]})
        image += noise.scanner_sd * rng.standard_normal(image.shape)
    else:
        image += noise.digital_sd * rng.standard_normal(image.shape)

    name = inbreast.dicom_file_name(plan.file_name, plan.key, plan.laterality, plan.view)
    spacing = [f"{pixel_mm:.6g}"] * 2
    extra = {"ImagerPixelSpacing": spacing} if plan.acquisition == DIGITAL else {}
    write_mammogram(root / inbreast.DICOM_DIR / name, _stored(image, BITS_STORED[plan.acquisition]),
                    bits_stored=BITS_STORED[plan.acquisition], uid_key=f"synthetic-inbreast/{seed}/{plan.file_name}",
                    PatientID=plan.patient, Laterality=plan.laterality, ViewPosition=plan.view, PixelSpacing=spacing,
                    ConversionType=CONVERSION_TYPE[plan.acquisition], BodyPartExamined="BREAST",
                    StudyDate=f"{plan.date}15", SeriesDescription=f"{plan.laterality} {plan.view}", **extra)
    if rois:
        inbreast.write_rois(root / inbreast.XML_DIR / f"{plan.file_name}.xml", rois, pixel_mm)
    birads = str(rng.choice(["2", "3", "4a", "4b", "4c"])) if placed else "1"
    row = {"Patient ID": plan.patient, "Patient age": plan.age, "Laterality": plan.laterality, "View": plan.view,
           "Acquisition date": plan.date, "File Name": plan.file_name, "ACR": _acr(density), "Bi-Rads": birads}
    return row, truth


def _image_of(arguments: tuple) -> tuple[dict, list[dict]]:
    return _image(*arguments)


# ---------------------------------------------------------------- the dataset


def generate_inbreast(raw_root: str | Path, *, n_images: int, seed: int,
                      image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE, pixel_mm: float = DEFAULT_PIXEL_MM,
                      film_fraction: float = 0.3, normal_fraction: float = 0.1, vessel_fraction: float = 0.7,
                      noise: Noise = Noise(), workers: int = 1) -> pd.DataFrame:
    """Write a synthetic INbreast of ``n_images`` images into the empty directory ``raw_root``; the truth table.

    ``image_size`` (rows, cols) and ``pixel_mm`` of every image (module docstring); ``film_fraction`` of
    digitised films, ``normal_fraction`` of images without calcifications (never the first), ``vessel_fraction``
    with tram-track vessels (always the first), each with at least one image of either kind when the fraction
    allows; ``workers`` processes write images side by side. Write through
    :func:`medrepro.data.atomic.atomic_dir` to publish it whole.
    """
    size = _check_arguments(n_images, image_size, pixel_mm, {"film_fraction": film_fraction,
                                                            "normal_fraction": normal_fraction,
                                                            "vessel_fraction": vessel_fraction})
    raw_root = Path(raw_root)
    _check_empty(raw_root)
    for folder in (inbreast.DICOM_DIR, inbreast.XML_DIR):
        (raw_root / folder).mkdir(parents=True, exist_ok=True)
    plans = _plans(np.random.default_rng(int(seed)), int(n_images), film_fraction, normal_fraction, vessel_fraction)
    tasks = [(raw_root, int(seed), plan, size, float(pixel_mm), noise) for plan in plans]
    results = ordered_map(_image_of, tasks, workers, desc="synthetic INbreast images")
    inbreast.write_table(raw_root / inbreast.TABLE_FILE, [row for row, _ in results], trailing_empty_rows=1)
    truth = pd.DataFrame([r for _, rows in results for r in rows], columns=TRUTH_COLUMNS)
    write_csv(raw_root / TRUTH_FILE, truth, float_format="%.4f")
    write_manifest(raw_root, raw_root / MANIFEST_FILE)
    log.info("wrote a synthetic INbreast of %d images (%d calcifications, %d vessels) to %s", n_images,
             int(truth["structure"].isin(STRUCTURES[:3]).sum()), int((truth["structure"] == "vascular").sum()),
             raw_root)
    return truth
