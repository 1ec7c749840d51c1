"""Synthetic chest radiograph phantoms written in each dataset's native format.

The stand-ins let the whole pipeline run without the registration-only
datasets. They are built so that registering them is a real problem:

* anatomy as smooth closed curves in "thorax units" (the distance between the
  lungs' lateral borders is about 1; x to the image's right, y downwards):
  body outline with neck and shoulders, two lungs with subject-specific apex,
  lateral bulge, costophrenic angle, diaphragm dome and medial border, a heart
  overlapping the lungs' medial borders (its width sets the cardiothoracic
  ratio, CTR > 0.5 in about 15% of subjects = cardiomegaly), mediastinum with
  aortic knob, abdomen below the domes, spine, posterior and anterior ribs,
  clavicles, humeral heads and, for some women, breast shadows;
* a subject-specific smooth non-rigid displacement (a sum of Gaussian radial
  basis functions plus a small anisotropic stretch), so a similarity transform
  cannot align two subjects;
* a patient pose (rotation of a few degrees, scale +-8%, shift) that a
  similarity pre-alignment has to remove;
* soft-tissue texture, lung vessel texture, exposure differences (gain,
  offset, gamma, a heel-effect ramp) and quantum noise; nodules in JSRT
  nodule cases, patchy upper-zone opacities for tuberculosis cases.

All geometry is kept as vertex lists, deformed and posed point-wise, then
rasterised: the image at a modest internal resolution (longest side
:data:`INTERNAL_MAX_SIDE`) and upsampled, the masks directly at their native
resolution, so images and masks agree to within a pixel and a 2048 x 2048 JSRT
image takes a fraction of a second.

Everything is deterministic: each subject draws from a NumPy Generator seeded
by ``(seed, crc32(name))``, so a subject looks the same whatever the number of
subjects generated with it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.path import Path as MplPath
from PIL import Image, ImageDraw
from scipy import ndimage

from medrepro.data.atomic import atomic_dir, write_csv
from medrepro.data.sourcing import MANIFEST_FILE, write_manifest
from medrepro.errors import ConfigError, DataError
from medrepro.studies.chest.readers import jsrt, montgomery, shenzhen
from medrepro.data.io.png import write_grey_png, write_mask_png

log = logging.getLogger(__name__)

DATASETS = ("JSRT", "Montgomery", "Shenzhen")
INTERNAL_MAX_SIDE = 512
TRUTH_FILE = "synthetic_truth.csv"
CARDIOMEGALY_CTR = 0.5
HILA = np.array([(-0.13, -0.05), (0.13, -0.08)])  # thorax units, where the vessel texture is densest


@dataclasses.dataclass(frozen=True)
class DatasetLook:
    """How a dataset frames the thorax and what its real counterpart contains."""

    default_size: tuple[int, int]  # (h, w) of the written images
    real_size: tuple[int, int]  # (h, w) of the real images, for the nominal spacing
    real_spacing_mm: float | None
    thorax_width_fraction: float  # lung-to-lung width / image width
    thorax_centre_row: float  # row of the thorax centre / image height
    abnormal_fraction: float  # nodule (JSRT) or tuberculosis (NLM) share
    mask_fraction: float  # share of images that have a mask
    size_jitter: float  # per-subject relative size variation


LOOKS: dict[str, DatasetLook] = {
    "JSRT": DatasetLook((2048, 2048), (2048, 2048), 0.175, 0.74, 0.46, 154 / 247, 1.0, 0.0),
    "Montgomery": DatasetLook((1223, 1005), (4892, 4020), 0.0875, 0.72, 0.42, 58 / 138, 1.0, 0.0),
    "Shenzhen": DatasetLook((1000, 1000), (3000, 3000), None, 0.72, 0.45, 336 / 662, 566 / 662, 0.08),
    # 1024 x 1024 downsamplings of originals such as 2992 x 2991 at 0.143 mm; no masks, no lesions
    "ChestX-ray14": DatasetLook((1024, 1024), (2991, 2992), 0.143, 0.68, 0.46, 0.0, 0.0, 0.0),
}


# ---------------------------------------------------------------- names


def subject_names(dataset: str, n_subjects: int) -> list[tuple[str, bool]]:
    """(name, abnormal) pairs following the real naming, abnormal in the real proportion."""
    look = LOOKS[dataset]
    n_abnormal = int(round(n_subjects * look.abnormal_fraction))
    n_normal = n_subjects - n_abnormal
    if dataset == "JSRT":
        return [(f"JPCLN{i:03d}", True) for i in range(1, n_abnormal + 1)] + [
            (f"JPCNN{i:03d}", False) for i in range(1, n_normal + 1)
        ]
    if dataset == "Montgomery":  # real numbering: normals from 0001, tuberculosis from 0104
        return [(f"MCUCXR_{i:04d}_0", False) for i in range(1, n_normal + 1)] + [
            (f"MCUCXR_{103 + i:04d}_1", True) for i in range(1, n_abnormal + 1)
        ]
    return [(f"CHNCXR_{i:04d}_0", False) for i in range(1, n_normal + 1)] + [
        (f"CHNCXR_{326 + i:04d}_1", True) for i in range(1, n_abnormal + 1)
    ]


def subject_rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


# ---------------------------------------------------------------- curves


def closed_curve(points: np.ndarray, per_segment: int = 12) -> np.ndarray:
    """Uniform Catmull-Rom spline through ``points`` (K, 2), closed; returns (K * per_segment, 2)."""
    p = np.asarray(points, dtype=float)
    p0, p1, p2, p3 = np.roll(p, 1, 0), p, np.roll(p, -1, 0), np.roll(p, -2, 0)
    t = np.linspace(0.0, 1.0, per_segment, endpoint=False)[None, :, None]
    a, b, c, d = (x[:, None, :] for x in (p0, p1, p2, p3))
    out = 0.5 * (2 * b + (-a + c) * t + (2 * a - 5 * b + 4 * c - d) * t**2 + (-a + 3 * b - 3 * c + d) * t**3)
    return out.reshape(-1, 2)


def open_curve(points: np.ndarray, per_segment: int = 12) -> np.ndarray:
    """Catmull-Rom spline through ``points`` (K, 2) from the first to the last point."""
    p = np.asarray(points, dtype=float)
    padded = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    t = np.linspace(0.0, 1.0, per_segment, endpoint=False)[None, :, None]
    a, b, c, d = (padded[i : i + len(p) - 1][:, None, :] for i in range(4))
    out = 0.5 * (2 * b + (-a + c) * t + (2 * a - 5 * b + 4 * c - d) * t**2 + (-a + 3 * b - 3 * c + d) * t**3)
    return np.vstack([out.reshape(-1, 2), p[-1:]])


def ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 48) -> np.ndarray:
    angle = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(angle), cy + ry * np.sin(angle)], axis=1)


# ---------------------------------------------------------------- anatomy


@dataclasses.dataclass
class Anatomy:
    """Vertex lists in thorax units, before deformation and pose."""

    polygons: dict[str, np.ndarray]  # closed outlines
    bones: list[tuple[np.ndarray, float, float]]  # (polyline, width in units, density)
    vertebrae: list[np.ndarray]


#: Heart outline control points as (fraction of width from the right border,
#: fraction of height from the top), going round on screen clockwise.
_HEART_POINTS = (
    (0.45, 0.0), (0.74, 0.07), (1.0, 0.60), (0.90, 0.94), (0.45, 1.04), (0.06, 0.95), (0.0, 0.52), (0.16, 0.10),
)


def _heart_point(heart: dict, index: int) -> tuple[float, float]:
    fx, fy = _HEART_POINTS[index]
    return (
        heart["right_x"] + fx * (heart["left_x"] - heart["right_x"]),
        heart["top_y"] + fy * (heart["bottom_y"] - heart["top_y"]),
    )


def _lung_outline(side: int, lung: dict, heart: dict, mediastinum_half: float, knob: float) -> np.ndarray:
    """One lung as a closed curve; ``side`` -1 = image left (patient's right), +1 = image right.

    The medial border follows the heart's border, reaching ``overlap`` into
    it (the SCR outlines overlap the heart slightly), and the mediastinum
    above the heart.
    """
    lat, ax, ay, cp, dome_y, dome_x = (lung[k] for k in ("lat", "apex_x", "apex_y", "cp_y", "dome_y", "dome_x"))
    overlap = heart["overlap"]
    span = cp - ay
    lateral = [(ax + (lat - ax) * f, ay + span * t) for f, t in zip(lung["profile"], (0.08, 0.25, 0.5, 0.78))]
    # heart border points on this side, from the diaphragm upwards, as magnitudes
    border_ids = (3, 2, 1) if side > 0 else (5, 6, 7)
    heart_side = [(side * x - overlap, y) for x, y in (_heart_point(heart, i) for i in border_ids)]
    cardiophrenic = (heart_side[0][0], min(heart_side[0][1], dome_y + 0.05))
    medial_top = mediastinum_half + 0.012 + (knob if side > 0 else 0.0)
    points = [
        (ax, ay),
        *lateral,
        (lat * 0.985, cp),
        (0.5 * (lat + dome_x), dome_y + 0.55 * (cp - dome_y)),
        (dome_x, dome_y),
        cardiophrenic,
        heart_side[1],
        (max(heart_side[2][0], mediastinum_half + 0.015), heart_side[2][1]),
        (medial_top, -0.22),
        (mediastinum_half + 0.02, ay + 0.14),
        (ax - 0.045, ay + 0.035),
    ]
    pts = np.array(points)
    pts[:, 0] *= side
    if side < 0:  # keep a consistent (clockwise on screen) orientation for both lungs
        pts = pts[::-1]
    return closed_curve(pts, per_segment=14)


def _heart_outline(heart: dict) -> np.ndarray:
    return closed_curve(np.array([_heart_point(heart, i) for i in range(len(_HEART_POINTS))]), per_segment=14)


def _sample_lung(rng: np.random.Generator, cp_mean: float) -> dict:
    lat = 0.5 * (1 + rng.normal(0, 0.035))
    cp = cp_mean + rng.normal(0, 0.04)
    return {
        "lat": lat,
        "apex_x": 0.21 + rng.normal(0, 0.025),
        "apex_y": -0.47 + rng.normal(0, 0.035),
        "cp_y": cp,
        "dome_y": cp - (0.13 + rng.normal(0, 0.035)),
        "dome_x": 0.27 + rng.normal(0, 0.035),
        # lateral border magnitude as a fraction of (lat - apex_x) at 4 heights
        "profile": np.clip(np.array([0.42, 0.78, 0.96, 1.0]) + rng.normal(0, 0.04, 4), 0.3, 1.03),
    }


def sample_anatomy(rng: np.random.Generator, sex: str, ctr_target: float) -> Anatomy:
    """Subject-specific anatomy in thorax units (before deformation and pose)."""
    right = _sample_lung(rng, 0.40)  # the right hemidiaphragm sits higher
    left = _sample_lung(rng, 0.44)
    thoracic = right["lat"] + left["lat"]
    heart_w = ctr_target * thoracic
    right_share = 0.36 + rng.normal(0, 0.03)
    heart = {
        "right_x": -heart_w * right_share + rng.normal(0, 0.01),
        "top_y": -0.06 + rng.normal(0, 0.03),
        "bottom_y": 0.5 * (right["dome_y"] + left["dome_y"]) + 0.06 + rng.normal(0, 0.015),
        "overlap": 0.022 + abs(rng.normal(0, 0.008)),
    }
    heart["left_x"] = heart["right_x"] + heart_w
    mediastinum_half = 0.072 + rng.normal(0, 0.01)
    knob = max(0.0, 0.03 + rng.normal(0, 0.012))

    polygons = {
        "right_lung": _lung_outline(-1, right, heart, mediastinum_half, knob),
        "left_lung": _lung_outline(+1, left, heart, mediastinum_half, knob),
        "heart": _heart_outline(heart),
    }
    mh, w = mediastinum_half, heart_w
    polygons["mediastinum"] = closed_curve(
        np.array(
            [
                (-mh, -1.2), (mh, -1.2), (mh, -0.36), (mh + knob, -0.23), (mh + 0.01, -0.12),
                (heart["left_x"] - 0.2 * w, heart["top_y"] + 0.12), (heart["right_x"] + 0.2 * w, heart["top_y"] + 0.12),
                (-mh - 0.015, -0.12), (-mh, -0.36),
            ]
        )
    )
    polygons["abdomen"] = _abdomen_outline(right, left, heart)
    polygons["body"] = _body_outline(rng)
    for side in (-1, 1):
        centre = (side * (0.80 + rng.normal(0, 0.02)), -0.50 + rng.normal(0, 0.03))
        polygons[f"humerus_{side}"] = ellipse(*centre, 0.10, 0.11)
    if sex == "F" and rng.random() < 0.7:
        size = 0.22 + rng.normal(0, 0.03)
        for side in (-1, 1):
            polygons[f"breast_{side}"] = ellipse(side * 0.32, 0.36 + rng.normal(0, 0.03), size, size * 0.72)
    bones = _ribs(rng, right, left) + _clavicles(rng, right, left)
    vertebrae = _vertebrae(rng)
    return Anatomy(polygons, bones, vertebrae)


def _abdomen_outline(right: dict, left: dict, heart: dict) -> np.ndarray:
    """The region below the diaphragm (an open dome curve closed far below the image)."""
    line = []
    for side, lung in ((-1, right), (+1, left)):
        border = -heart["right_x"] if side < 0 else heart["left_x"]
        part = [
            (1.0, lung["cp_y"] + 0.08),
            (lung["lat"] * 0.985, lung["cp_y"] + 0.006),
            (0.5 * (lung["lat"] + lung["dome_x"]), lung["dome_y"] + 0.55 * (lung["cp_y"] - lung["dome_y"]) + 0.006),
            (lung["dome_x"], lung["dome_y"] + 0.006),
            (border - heart["overlap"], lung["dome_y"] + 0.04),
        ]
        part = [(side * x, y) for x, y in part]
        line.extend(part if side < 0 else part[::-1])
    line.insert(5, (0.5 * (heart["right_x"] + heart["left_x"]), heart["bottom_y"] - 0.02))
    curve = open_curve(np.array(line), per_segment=10)
    return np.vstack([curve, [(1.0, 3.0), (-1.0, 3.0)]])


def _body_outline(rng: np.random.Generator) -> np.ndarray:
    half = 0.64 * (1 + rng.normal(0, 0.05))
    shoulder = -0.62 + rng.normal(0, 0.03)
    neck = 0.14 + rng.normal(0, 0.01)
    side = [
        (neck, -1.6), (neck + 0.01, -0.85), (0.40, shoulder - 0.06), (0.70, shoulder + 0.02), (0.80, shoulder + 0.16),
        (half + 0.06, -0.22), (half, 0.15), (half - 0.02, 0.55), (half, 1.0), (half + 0.05, 2.2),
    ]
    right = [(-x, y) for x, y in side]
    return open_curve(np.array(right[::-1] + side), per_segment=8)


def _lateral_reach(lung: dict, y: float) -> float:
    """Magnitude of the lateral chest wall at height ``y`` (just outside the lung)."""
    ys = lung["apex_y"] + (lung["cp_y"] - lung["apex_y"]) * np.array([0.0, 0.08, 0.25, 0.5, 0.78, 1.0, 1.4])
    xs = lung["apex_x"] + (lung["lat"] - lung["apex_x"]) * np.r_[0.0, lung["profile"], 0.985, 1.0]
    return float(np.interp(y, ys, xs)) + 0.035


def _ribs(rng: np.random.Generator, right: dict, left: dict) -> list[tuple[np.ndarray, float, float]]:
    bones = []
    spacing = 0.083 * (1 + rng.normal(0, 0.05))
    first = min(right["apex_y"], left["apex_y"]) - 0.05
    for side, lung in ((-1, right), (+1, left)):
        for i in range(10):
            y0 = first + i * spacing * (1 + 0.035 * i) + rng.normal(0, 0.006)
            reach = _lateral_reach(lung, y0 + 0.05)
            t = np.linspace(0.0, 1.0, 9)
            x = 0.05 + t * (reach - 0.05)
            # posterior rib: laterally from the spine, rising a little, then bending down at the wall
            y = y0 - 0.045 * np.sin(np.pi * t * 0.7) + (0.16 + 0.01 * i) * t**2.5
            posterior = np.stack([side * x, y], axis=1)
            bones.append((posterior, 0.026 + 0.0015 * i, 0.05))
            if i >= 7:  # the lower ribs' anterior ends are cartilage, invisible on a radiograph
                continue
            # anterior rib: from the wall obliquely down towards the sternum (cartilage not drawn)
            s = np.linspace(0.0, 1.0, 7)
            ax = reach - s * (reach - 0.2)
            ay = y[-1] + 0.02 + 0.22 * s - 0.05 * np.sin(np.pi * s)
            bones.append((np.stack([side * ax, ay], axis=1), 0.024, 0.025))
    return bones


def _clavicles(rng: np.random.Generator, right: dict, left: dict) -> list[tuple[np.ndarray, float, float]]:
    bones = []
    for side, lung in ((-1, right), (+1, left)):
        y = lung["apex_y"] + 0.04 + rng.normal(0, 0.02)
        tilt = 0.16 + rng.normal(0, 0.03)
        points = np.array([(0.04, y), (0.18, y - 0.03), (0.36, y - 0.05 - 0.15 * tilt), (0.58, y - tilt)])
        points[:, 0] *= side
        bones.append((open_curve(points, per_segment=6), 0.036, 0.11))
    return bones


def _vertebrae(rng: np.random.Generator) -> list[np.ndarray]:
    blocks = []
    height = 0.072 * (1 + rng.normal(0, 0.04))
    y = -1.3 + rng.uniform(0, height)
    while y < 2.2:
        half = 0.045 + 0.012 * (y + 1.3) / 3.5
        blocks.append(np.array([(-half, y), (half, y), (half, y + height), (-half, y + height)]))
        y += height * 1.2
    return blocks


def cardiothoracic_ratio(anatomy: Anatomy) -> float:
    """Widest horizontal heart extent over the distance between the lungs' lateral borders."""
    heart = anatomy.polygons["heart"][:, 0]
    right, left = anatomy.polygons["right_lung"][:, 0], anatomy.polygons["left_lung"][:, 0]
    return float((heart.max() - heart.min()) / (left.max() - right.min()))


# ---------------------------------------------------------------- deformation and pose


@dataclasses.dataclass
class Deformation:
    """Smooth subject-specific displacement in thorax units: stretch plus Gaussian RBF bumps."""

    stretch: np.ndarray  # (2,) multiplicative x, y
    centres: np.ndarray  # (K, 2)
    amplitudes: np.ndarray  # (K, 2)
    sigma: float

    @staticmethod
    def sample(rng: np.random.Generator, amplitude: float = 0.035, sigma: float = 0.28) -> "Deformation":
        grid = np.stack(np.meshgrid(np.linspace(-0.75, 0.75, 4), np.linspace(-0.8, 0.8, 4)), -1).reshape(-1, 2)
        centres = grid + rng.normal(0, 0.08, grid.shape)
        stretch = np.exp(rng.normal(0, [0.045, 0.05]))
        stretch /= math.sqrt(stretch[0] * stretch[1])  # overall size belongs to the pose scale
        return Deformation(stretch, centres, rng.normal(0, amplitude, centres.shape), sigma)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        d2 = ((points[:, None, :] - self.centres[None, :, :]) ** 2).sum(-1)
        weights = np.exp(-d2 / (2 * self.sigma**2))
        return points * self.stretch + weights @ self.amplitudes


@dataclasses.dataclass
class Pose:
    """Patient positioning: what a similarity pre-alignment has to undo."""

    rotation_deg: float
    scale: float
    shift_row: float  # pixels of the full-size image
    shift_col: float

    @staticmethod
    def sample(rng: np.random.Generator, shape: tuple[int, int]) -> "Pose":
        h, w = shape
        return Pose(
            rotation_deg=float(np.clip(rng.normal(0, 2.0), -5, 5)),
            scale=float(rng.uniform(0.92, 1.08)),
            shift_row=float(np.clip(rng.normal(0, 0.025), -0.05, 0.05) * h),
            shift_col=float(np.clip(rng.normal(0, 0.025), -0.05, 0.05) * w),
        )


@dataclasses.dataclass
class Placement:
    """Maps thorax units to (col, row) pixel coordinates of an image of ``shape``."""

    shape: tuple[int, int]
    look: DatasetLook
    deformation: Deformation
    pose: Pose

    @property
    def pixels_per_unit(self) -> float:
        return self.look.thorax_width_fraction * self.shape[1] * self.pose.scale

    def __call__(self, points: np.ndarray) -> np.ndarray:
        q = self.deformation(np.asarray(points, dtype=float))
        theta = math.radians(self.pose.rotation_deg)
        c, s = math.cos(theta), math.sin(theta)
        k = self.pixels_per_unit
        col = (self.shape[1] - 1) / 2 + self.pose.shift_col + k * (c * q[:, 0] - s * q[:, 1])
        row = self.look.thorax_centre_row * (self.shape[0] - 1) + self.pose.shift_row + k * (s * q[:, 0] + c * q[:, 1])
        return np.stack([col, row], axis=1)


def rescale_points(points: np.ndarray, from_shape: tuple[int, int], to_shape: tuple[int, int]) -> np.ndarray:
    """Pixel coordinates on one grid to another covering the same field (pixel centres aligned)."""
    fy, fx = to_shape[0] / from_shape[0], to_shape[1] / from_shape[1]
    return np.stack([(points[:, 0] + 0.5) * fx - 0.5, (points[:, 1] + 0.5) * fy - 0.5], axis=1)


# ---------------------------------------------------------------- subject


@dataclasses.dataclass
class Lesion:
    """A round nodule (JSRT) or a patchy tuberculosis opacity (NLM sets)."""

    kind: str  # "nodule" or "tb"
    centre: np.ndarray  # (2,) thorax units
    radius: float  # thorax units
    density: float
    side: int  # -1 patient's right lung (image left), +1 left lung


@dataclasses.dataclass
class SyntheticSubject:
    """Every random choice made for one subject; rendering it is deterministic."""

    dataset: str
    name: str
    abnormal: bool
    sex: str
    age: int
    shape: tuple[int, int]
    anatomy: Anatomy
    placement: Placement
    lesions: list[Lesion]
    exposure: dict
    seed: int

    @property
    def ctr(self) -> float:
        """Cardiothoracic ratio after the non-rigid deformation (the pose leaves it unchanged)."""
        return cardiothoracic_ratio(self.deformed_organs())

    def deformed_organs(self) -> Anatomy:
        """Heart and lung outlines after the non-rigid deformation, before the pose."""
        deform = self.placement.deformation
        polygons = {k: deform(self.anatomy.polygons[k]) for k in ("heart", "right_lung", "left_lung")}
        return Anatomy(polygons, [], [])


def _sample_point_in(rng: np.random.Generator, polygon: np.ndarray, exclude: np.ndarray, y_range: tuple[float, float]):
    inside, outside = MplPath(polygon), MplPath(exclude)
    lo, hi = polygon.min(0), polygon.max(0)
    for _ in range(200):
        p = rng.uniform(lo, hi)
        if inside.contains_point(p) and not outside.contains_point(p) and y_range[0] <= p[1] <= y_range[1]:
            return p
    return polygon.mean(0)


def _sample_lesions(rng: np.random.Generator, dataset: str, abnormal: bool, anatomy: Anatomy) -> list[Lesion]:
    if not abnormal:
        return []
    heart = anatomy.polygons["heart"]
    lesions = []
    if dataset == "JSRT":
        side = int(rng.choice([-1, 1]))
        lung = anatomy.polygons["right_lung" if side < 0 else "left_lung"]
        centre = _sample_point_in(rng, lung, heart, (-1.0, 1.0))
        size_mm = float(np.clip(rng.lognormal(math.log(15), 0.4), 6, 50))
        radius = size_mm / 2 / 280.0  # thorax unit ~ 280 mm in an adult
        lesions.append(Lesion("nodule", centre, radius, float(rng.uniform(0.06, 0.16)), side))
        return lesions
    for _ in range(int(rng.integers(1, 4))):
        side = int(rng.choice([-1, 1]))
        lung = anatomy.polygons["right_lung" if side < 0 else "left_lung"]
        top = lung[:, 1].min()
        centre = _sample_point_in(rng, lung, heart, (top, top + 0.45))
        lesions.append(Lesion("tb", centre, float(rng.uniform(0.05, 0.11)), float(rng.uniform(0.16, 0.28)), side))
    return lesions


def _subject_shape(look: DatasetLook, size: tuple[int, int], rng: np.random.Generator) -> tuple[int, int]:
    if look.size_jitter <= 0:
        return size
    jitter = 1 + rng.uniform(-look.size_jitter, look.size_jitter, 2)
    return int(round(size[0] * jitter[0])), int(round(size[1] * jitter[1]))


def sample_subject(
    dataset: str, name: str, abnormal: bool, seed: int, image_size: tuple[int, int] | None = None,
    ctr_target: float | None = None,
) -> SyntheticSubject:
    """All random choices for one subject (geometry, pose, lesions, exposure), without rendering.

    ``ctr_target`` replaces the sampled cardiothoracic ratio (the draw still
    happens, so every other choice stays the same).
    """
    look = LOOKS[dataset]
    rng = subject_rng(seed, name)
    shape = _subject_shape(look, tuple(image_size or look.default_size), rng)
    sex = "F" if rng.random() < 0.5 else "M"
    age = int(np.clip(rng.normal(50, 16), 16, 89))
    sampled_ctr = float(np.clip(rng.normal(0.442, 0.052), 0.33, 0.66))
    ctr_target = sampled_ctr if ctr_target is None else float(ctr_target)
    anatomy = sample_anatomy(rng, sex, ctr_target)
    placement = Placement(shape, look, Deformation.sample(rng), Pose.sample(rng, shape))
    lesions = _sample_lesions(rng, dataset, abnormal, anatomy)
    exposure = sample_exposure(rng)
    return SyntheticSubject(dataset, name, abnormal, sex, age, shape, anatomy, placement, lesions, exposure, seed)


def sample_exposure(
    rng: np.random.Generator,
    gain: tuple[float, float] = (0.85, 1.15),
    offset_sd: float = 0.03,
    gamma_log_sd: float = 0.15,
    noise: tuple[float, float] = (0.004, 0.012),
) -> dict:
    """Exposure of one radiograph: the values the renderer reads, drawn in a fixed order (seeded output)."""
    return {
        "gain": float(rng.uniform(*gain)),
        "offset": float(rng.normal(0, offset_sd)),
        "gamma": float(np.exp(rng.normal(0, gamma_log_sd))),
        "ramp": float(rng.normal(0, 0.03)),
        "noise": float(rng.uniform(*noise)),
        "texture_seed": int(rng.integers(2**31)),
    }


# ---------------------------------------------------------------- rasterising


def fill_polygon(points_px: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of a polygon given as (col, row) pixel coordinates."""
    img = Image.new("L", (shape[1], shape[0]), 0)
    ImageDraw.Draw(img).polygon([tuple(p) for p in points_px.tolist()], fill=255)
    return np.asarray(img) > 0


def organ_masks(subject: SyntheticSubject, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Right lung, left lung and heart masks on a grid of ``shape`` covering the image's field."""
    masks = {}
    for organ, key in (("right lung", "right_lung"), ("left lung", "left_lung"), ("heart", "heart")):
        points = rescale_points(subject.placement(subject.anatomy.polygons[key]), subject.shape, shape)
        masks[organ] = fill_polygon(points, shape)
    return masks


# ---------------------------------------------------------------- rendering


def internal_shape(shape: tuple[int, int]) -> tuple[int, int]:
    factor = INTERNAL_MAX_SIDE / max(shape)
    return max(8, int(round(shape[0] * factor))), max(8, int(round(shape[1] * factor)))


def _blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur; wide kernels run on a block-averaged grid (within ~2% of the exact filter)."""
    image = np.asarray(image, dtype=np.float32)
    if sigma_px <= 0.3:
        return image
    step = int(sigma_px // 3)
    if step < 2:
        return ndimage.gaussian_filter(image, sigma_px, truncate=3.0)
    h, w = image.shape
    ph, pw = -h % step, -w % step
    padded = np.pad(image, ((0, ph), (0, pw)), mode="edge")
    coarse = padded.reshape(padded.shape[0] // step, step, padded.shape[1] // step, step).mean(axis=(1, 3))
    # block averaging and bilinear upsampling already blur by about step / 2 (in variance: step**2 / 4)
    coarse = ndimage.gaussian_filter(coarse, math.sqrt(sigma_px**2 / step**2 - 0.25), truncate=3.0)
    return _resize(coarse, (h + ph, w + pw))[:h, :w]


def _resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float32 image with pixel centres aligned (PIL)."""
    resized = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F").resize(
        (shape[1], shape[0]), Image.Resampling.BILINEAR
    )
    return np.array(resized, dtype=np.float32)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian noise low-passed at ``sigma_px``, computed on a coarse grid."""
    step = max(1, int(sigma_px // 2))
    coarse = rng.standard_normal((shape[0] // step + 2, shape[1] // step + 2)).astype(np.float32)
    coarse = ndimage.gaussian_filter(coarse, sigma_px / step)
    field = _resize(coarse, ((shape[0] // step + 2) * step, (shape[1] // step + 2) * step))[: shape[0], : shape[1]]
    return (field - field.mean()) / (field.std() + 1e-6)


def render_image(subject: SyntheticSubject) -> np.ndarray:
    """The radiograph (bright = dense) at full size as float32 in 0..1.

    Densities add up (a projection); layers sharing an edge blur are summed
    before blurring once, which is the same thing for a linear filter.
    """
    shape = internal_shape(subject.shape)
    to_internal = lambda pts: rescale_points(subject.placement(pts), subject.shape, shape)  # noqa: E731
    unit = subject.placement.pixels_per_unit * shape[1] / subject.shape[1]  # internal px per thorax unit
    rng = np.random.default_rng(subject.exposure["texture_seed"])
    poly = {k: fill_polygon(to_internal(v), shape) for k, v in subject.anatomy.polygons.items()}
    spine = np.zeros(shape, dtype=bool)
    for block in subject.anatomy.vertebrae:
        spine |= fill_polygon(to_internal(block), shape)

    body = poly["body"]
    above_diaphragm = ~poly["abdomen"]  # below it the heart merges with the abdomen's density
    air = (poly["right_lung"] | poly["left_lung"]) & ~poly["heart"] & ~poly["mediastinum"]
    sharp = (
        0.20 * body
        + 0.15 * (poly["abdomen"] & body)
        + 0.12 * (poly["heart"] & above_diaphragm)
        + 0.10 * spine
    )
    soft = 0.09 * (poly["mediastinum"] & ~poly["heart"] & above_diaphragm) + 0.09 * (
        poly["humerus_-1"] | poly["humerus_1"]
    )
    breasts = [poly[k] for k in ("breast_-1", "breast_1") if k in poly]
    image = 0.04 + _blur(sharp, 0.005 * unit) + _blur(soft, 0.01 * unit) + 0.16 * _blur(body, 0.08 * unit)
    if breasts:
        image += 0.05 * _blur(np.logical_or.reduce(breasts) & body, 0.02 * unit)
    air_soft = _blur(air, 0.004 * unit)
    image -= air_soft * (0.18 + 0.16 * _blur(air, 0.06 * unit))  # more air away from the lung borders
    image += _render_bones(subject, to_internal, unit, shape)
    image += _lung_texture(rng, air_soft, shape, unit, to_internal(HILA))
    image += 0.015 * _smooth_noise(rng, shape, 0.05 * unit) * body
    image += _render_lesions(subject, to_internal, unit, shape, rng)
    image = _expose(image, subject.exposure, shape)
    return _upsample_with_noise(image, subject.shape, subject.exposure["noise"], rng)


def thick_polyline(points: np.ndarray, width: float) -> np.ndarray:
    """Outline polygon of a band of ``width`` along a polyline, tapering over the end segments."""
    tangent = np.gradient(points, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True) + 1e-12
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    half = np.full(len(points), width / 2)
    half[0] = half[-1] = width / 4  # rounded-off ends
    return np.vstack([points + normal * half[:, None], (points - normal * half[:, None])[::-1]])


def _render_bones(subject: SyntheticSubject, to_internal, unit: float, shape: tuple[int, int]) -> np.ndarray:
    """Ribs and clavicles: dense bands, edge-enhanced to suggest the cortical rim."""
    canvases: dict[float, tuple[Image.Image, ImageDraw.ImageDraw]] = {}
    for line, width, density in subject.anatomy.bones:
        if density not in canvases:
            img = Image.new("L", (shape[1], shape[0]), 0)
            canvases[density] = (img, ImageDraw.Draw(img))
        points = to_internal(thick_polyline(open_curve(line, per_segment=4), width))
        canvases[density][1].polygon([tuple(p) for p in points.tolist()], fill=255)
    layer = np.zeros(shape, dtype=np.float32)
    for density, (img, _) in canvases.items():
        layer += density * (np.asarray(img) > 0)  # overlapping bones add up
    soft = _blur(layer, 0.003 * unit)
    return soft + 0.6 * np.clip(soft - _blur(layer, 0.008 * unit), 0, None)


def _lung_texture(
    rng: np.random.Generator, air: np.ndarray, shape: tuple[int, int], unit: float, hila: np.ndarray
) -> np.ndarray:
    """Vessel-like band-pass texture, strongest near the hila (``hila``: (2, 2) internal (col, row))."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    fine = _blur(noise, 0.007 * unit)
    band = fine - _blur(fine, 0.019 * unit)
    band /= band.std() + 1e-6
    rows, cols = np.indices(shape, dtype=np.float32)
    dist = np.min([np.hypot(cols - c, rows - r) for c, r in hila], axis=0) / unit
    return 0.018 * band * air * (0.5 + np.exp(-(dist**2) / 0.05))


def _render_lesions(subject: SyntheticSubject, to_internal, unit: float, shape, rng) -> np.ndarray:
    layer = np.zeros(shape, dtype=np.float32)
    if not subject.lesions:
        return layer
    rows, cols = np.indices(shape, dtype=np.float32)
    for lesion in subject.lesions:
        col, row = to_internal(lesion.centre[None, :])[0]
        radius = lesion.radius * unit
        d = np.hypot(cols - col, rows - row) / max(radius, 1.0)
        if lesion.kind == "nodule":
            layer += lesion.density * np.sqrt(np.clip(1 - d**2, 0, 1))
        else:
            patches = np.clip(_smooth_noise(rng, shape, max(radius / 5, 1.0)) + 0.5, 0, 1.5)
            layer += lesion.density * np.exp(-(d**2) * 1.5) * patches
    return ndimage.gaussian_filter(layer, 0.6)


def _expose(image: np.ndarray, exposure: dict, shape: tuple[int, int]) -> np.ndarray:
    ramp = np.linspace(-1, 1, shape[0], dtype=np.float32)[:, None] * exposure["ramp"]
    image = np.clip(image + ramp, 0, 1) ** exposure["gamma"]
    return np.clip(exposure["offset"] + exposure["gain"] * image, 0, 1).astype(np.float32)


def _upsample_with_noise(image: np.ndarray, shape: tuple[int, int], noise: float, rng) -> np.ndarray:
    big = _resize(image, shape)
    # uniform noise with the requested standard deviation: as good as Gaussian here and 3x cheaper
    big += (rng.random(shape, dtype=np.float32) - np.float32(0.5)) * np.float32(noise * math.sqrt(12))
    return np.clip(big, 0, 1, out=big)


# ---------------------------------------------------------------- native writers


def _nodule_truth(subject: SyntheticSubject) -> dict:
    nodules = [l for l in subject.lesions if l.kind == "nodule"]
    if not nodules:
        return {}
    nodule = nodules[0]
    col, row = subject.placement(nodule.centre[None, :])[0]
    size_mm = nodule.radius * 2 * subject.placement.pixels_per_unit * jsrt.JSRT_SPACING_MM
    lobe = "upper" if nodule.centre[1] < 0.0 else "lower"
    return {
        "nodule_x": int(round(col)),
        "nodule_y": int(round(row)),
        "nodule_size_mm": int(round(size_mm)),
        "subtlety": int(np.clip(round(1 + (nodule.density - 0.06) / 0.1 * 4), 1, 5)),  # 5 = obvious
        "location": f"{'r' if nodule.side < 0 else 'l'}.{lobe} lobe",
    }


def _write_jsrt(raw_root: Path, subject: SyntheticSubject, image: np.ndarray) -> dict:
    raw = np.rint((1.0 - (0.05 + 0.9 * image)) * jsrt.JSRT_MAX).astype(np.uint16)  # high raw = dark
    jsrt.write_jsrt_image(raw_root / "images" / f"{subject.name}.IMG", raw)
    for organ, mask in organ_masks(subject, jsrt.SCR_SHAPE).items():
        jsrt.write_scr_mask(jsrt.scr_mask_path(raw_root / "scr", subject.name, organ), mask)
    return _nodule_truth(subject)


def _lungs_without_heart(subject: SyntheticSubject) -> dict[str, np.ndarray]:
    """Visible lung fields (the NLM masks do not reach behind the heart)."""
    masks = organ_masks(subject, subject.shape)
    return {k: masks[k] & ~masks["heart"] for k in ("right lung", "left lung")}


def _tb_findings(subject: SyntheticSubject) -> str:
    if not subject.abnormal:
        return "normal"
    sides = sorted({"right" if l.side < 0 else "left" for l in subject.lesions})
    return f"PTB in the {' and '.join(sides)} upper field" + ("s" if len(sides) > 1 else "")


def _write_montgomery(raw_root: Path, subject: SyntheticSubject, image: np.ndarray) -> dict:
    base = raw_root / montgomery.SET_DIR
    write_grey_png(base / "CXR_png" / f"{subject.name}.png", np.rint(image * 255).astype(np.uint8))
    lungs = _lungs_without_heart(subject)
    write_mask_png(base / "ManualMask" / "leftMask" / f"{subject.name}.png", lungs["right lung"])  # image-left lung
    write_mask_png(base / "ManualMask" / "rightMask" / f"{subject.name}.png", lungs["left lung"])
    montgomery.write_montgomery_reading(
        base / "ClinicalReadings" / f"{subject.name}.txt", subject.sex, subject.age, _tb_findings(subject)
    )
    return {}


def _shenzhen_first_line(rng: np.random.Generator, sex: str, age: int) -> str:
    """``male 35yrs`` with the kinds of irregularity the real readings have."""
    word = {"M": "male", "F": "female"}[sex]
    variants = [f"{word} {age}yrs", f"{word} {age}yrs", f"{word.capitalize()} {age}yrs", f"{word}{age}yrs",
                f"{word} {age} yrs", f"{word} {age}yr", f"{word[:-1]} {age}yrs"]
    return variants[int(rng.integers(len(variants)))]


def _write_shenzhen(raw_root: Path, subject: SyntheticSubject, image: np.ndarray, with_mask: bool) -> dict:
    rng = subject_rng(subject.seed + 1, subject.name)
    base = raw_root / shenzhen.SET_DIR
    mode = "RGB" if rng.random() < 0.15 else "P"
    write_grey_png(base / "CXR_png" / f"{subject.name}.png", np.rint(image * 255).astype(np.uint8), mode=mode)
    first = _shenzhen_first_line(rng, subject.sex, subject.age)
    shenzhen.write_shenzhen_reading(base / "ClinicalReadings" / f"{subject.name}.txt", first, _tb_findings(subject))
    if with_mask:
        lungs = _lungs_without_heart(subject)
        write_mask_png(
            raw_root / "shcxr-lung-mask" / "mask" / f"{subject.name}{shenzhen.MASK_SUFFIX}",
            lungs["right lung"] | lungs["left lung"],
        )
    return {"png_mode": mode, "reading_line": first}


# ---------------------------------------------------------------- dataset


def _truth_row(subject: SyntheticSubject, has_mask: bool, extra: dict) -> dict:
    look = LOOKS[subject.dataset]
    pose = subject.placement.pose
    ctr = subject.ctr
    nominal = None if look.real_spacing_mm is None else look.real_spacing_mm * look.real_size[0] / subject.shape[0]
    row = {
        "name": subject.name,
        "dataset": subject.dataset,
        "height": subject.shape[0],
        "width": subject.shape[1],
        "nominal_spacing_mm": nominal,
        "sex": subject.sex,
        "age": subject.age,
        "ctr": round(ctr, 4),
        "cardiomegaly": ctr > CARDIOMEGALY_CTR,
        ("nodule" if subject.dataset == "JSRT" else "tb"): int(subject.abnormal),
        "has_mask": has_mask,
        "rotation_deg": round(pose.rotation_deg, 3),
        "scale": round(pose.scale, 4),
        "shift_row_px": round(pose.shift_row, 2),
        "shift_col_px": round(pose.shift_col, 2),
        "stretch_x": round(float(subject.placement.deformation.stretch[0]), 4),
        "stretch_y": round(float(subject.placement.deformation.stretch[1]), 4),
        "n_lesions": len(subject.lesions),
    }
    row.update(extra)
    return row


def _mask_flags(dataset: str, names: list[str], seed: int) -> dict[str, bool]:
    """Which subjects get a mask: all, except the Shenzhen share the mask release lacks."""
    look = LOOKS[dataset]
    n_with = max(1, int(round(len(names) * look.mask_fraction))) if names else 0
    order = np.random.default_rng([int(seed), 7]).permutation(len(names))
    chosen = set(order[:n_with].tolist())
    return {name: i in chosen for i, name in enumerate(names)}


def generate_dataset(
    dataset: str,
    raw_root: str | Path,
    n_subjects: int,
    seed: int,
    image_size: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """Write ``n_subjects`` synthetic subjects in ``dataset``'s native layout under ``raw_root``.

    ``image_size`` (h, w) applies to Montgomery (default 1223 x 1005, a
    quarter of the real 4892 x 4020) and Shenzhen (default about 1000 x 1000,
    each subject varying by up to +-8%); JSRT is always 2048 x 2048. The
    directory is replaced atomically and ends with ``synthetic_truth.csv``
    (per-subject truth) and ``MANIFEST.sha256`` (every file's digest, for the
    obtain step). Returns the truth table.
    """
    if dataset not in DATASETS:
        raise ConfigError(f"unknown chest dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    if n_subjects < 1:
        raise ConfigError(f"n_subjects must be at least 1, got {n_subjects}")
    if dataset == "JSRT" and image_size is not None and tuple(image_size) != jsrt.JSRT_SHAPE:
        raise ConfigError(f"JSRT images are always {jsrt.JSRT_SHAPE}; image_size {image_size} cannot apply")
    raw_root = Path(raw_root)
    _refuse_to_replace_real_data(raw_root)
    pairs = subject_names(dataset, n_subjects)
    has_mask = _mask_flags(dataset, [n for n, _ in pairs], seed)
    rows = []
    with atomic_dir(raw_root) as tmp:
        for name, abnormal in pairs:
            subject = sample_subject(dataset, name, abnormal, seed, image_size)
            image = render_image(subject)
            if dataset == "JSRT":
                extra = _write_jsrt(tmp, subject, image)
            elif dataset == "Montgomery":
                extra = _write_montgomery(tmp, subject, image)
            else:
                extra = _write_shenzhen(tmp, subject, image, has_mask[name])
            rows.append(_truth_row(subject, has_mask[name], extra))
        truth = pd.DataFrame(rows)
        if dataset == "JSRT":
            jsrt.write_clinical_tables(tmp / "images", [_jsrt_clinical_row(r) for r in rows])
        write_csv(tmp / TRUTH_FILE, truth)
        write_manifest(tmp, tmp / MANIFEST_FILE)
    log.info("wrote %d synthetic %s subjects to %s", len(rows), dataset, raw_root)
    return truth


def _refuse_to_replace_real_data(raw_root: Path) -> None:
    """The directory is replaced wholesale: never do that to something the generator did not write."""
    if raw_root.is_symlink():
        raise DataError(raw_root, "is a link (to a user's copy?); refusing to replace it with synthetic data")
    if raw_root.is_dir() and any(raw_root.iterdir()) and not (raw_root / TRUTH_FILE).is_file():
        raise DataError(
            raw_root, f"exists without {TRUTH_FILE} (real data?); refusing to replace it with synthetic data"
        )


def _jsrt_clinical_row(row: dict) -> dict:
    out = {"name": row["name"], "age": row["age"], "sex": row["sex"]}
    if row.get("nodule"):
        out.update({k: row[k] for k in ("subtlety", "nodule_size_mm", "nodule_x", "nodule_y", "location")})
        out.update({"malignancy": "malignant" if row["nodule_size_mm"] > 15 else "benign",
                    "diagnosis": "lung cancer" if row["nodule_size_mm"] > 15 else "granuloma"})
    return out
