"""Seeded synthetic brain MRI pairs standing in for the BraTS-Reg 2022 challenge data.

A case is a glioma patient's pre-operative *baseline* scan and post-resection *follow-up* scan, both skull-stripped
and rigidly pre-aligned, in four modalities (``MODALITIES``), on BraTS's 240 x 240 x 155 grid at 1 mm (or any
``voxel_mm``), with landmarks at corresponding anatomical points of the two scans.

* **Frame.** Arrays are (z, y, x) as SimpleITK's ``GetArrayFromImage`` gives them: z runs inferior to superior, y
  anterior to posterior, x across the midline. Physical coordinates (mm) have their origin at the volume centre.
  Every size is in mm, and every random draw that shapes the patient comes from a lattice of fixed physical
  spacing, so a seed gives the same patient at every ``voxel_mm``; only the choice of landmarks and the noise
  depend on the grid.
* **Healthy anatomy A.** Smooth signed-distance-like fields held on a node grid (``NODE_MM``, or the voxel grid if
  coarser): depth below the brain surface (a perturbed egg-shaped ellipsoid), sulcal sheets (zero set of a random
  field on the brain surface, extended radially, so sulci run inwards) and how deep they reach, the midline fissure
  down to the corpus callosum, the lateral ventricles (curved tubes with frontal, occipital and temporal horns) and
  the third ventricle, deep grey nuclei, and a texture that also sets the cortical thickness. Vessels are branching
  centreline trees sampled every 0.5 mm. Tissue is decided per voxel only after warping, so thin structures (the
  cortical ribbon, sulcal clefts) stay sharp: pial distance = min(depth, sulcal cleft, fissure); CSF below 0, grey
  matter up to the cortical thickness, white matter beyond, with one-voxel partial-volume ramps.
* **Baseline** B(x) = A(x + d_B(x)) with the tumour painted (necrotic core, enhancing rim, oedema in the white
  matter). d_B is the tumour's mass effect: a push along rays from the tumour centre, largest (``mass_effect_mm``)
  at the tumour border and decaying to zero within a reach that stops short of the skull where it can. Rays are
  kept, so the map is invertible exactly when it is monotone along each ray, which the profile guarantees
  (slope <= 0.675), and its inverse is a one-dimensional Newton solve.
* **Follow-up** F(x) = A(x + d_F(x)) with the resection cavity painted: d_F is the mass effect relaxed to
  ``relaxation`` of its size, plus a smooth random field (``random_deformation_mm`` rms) and a small rigid motion
  (<= 2 degrees, <= 2 mm). The cavity is the follow-up tissue whose baseline counterpart was tumour.
* **Ground truth.** ``followup_to_baseline`` is inv_B(p + d_F(p)) - p, computed exactly on the node grid and
  interpolated trilinearly to the voxels. Landmarks are anatomical points a of A (vessel bifurcations, ventricle
  horn tips, sulcal fundi and gyral crowns, midline points, some close to the tumour); their positions solve
  p + d(p) = a in each scan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage as ndi

from medrepro.errors import ConfigError

__all__ = ["MODALITIES", "LABELS", "PhantomSettings", "BrainPair", "make_pair"]

MODALITIES = ("t1", "t1ce", "t2", "flair")
LABELS = {"background": 0, "csf": 1, "gm": 2, "wm": 3, "oedema": 4, "enhancing": 5, "necrosis": 6, "vessel": 7,
          "cavity": 8}

NATIVE_MM = (155.0, 240.0, 240.0)   # z, y, x extent of the BraTS grid
NODE_MM = 2.0                       # the smooth fields' grid: fine enough for trilinear error << 0.1 mm
VESSEL_STEP_MM = 0.5

# Class intensities per modality, on a typical int16 scale. Order: csf, gm, wm, vessel, oedema, enhancing,
# necrosis, cavity fluid, gliosis (the follow-up's rim).
_CONTRAST = {
    "t1": (250, 600, 850, 450, 520, 560, 300, 230, 600),
    "t1ce": (260, 620, 860, 1350, 540, 1300, 320, 240, 950),
    "t2": (1400, 800, 560, 250, 1150, 1000, 1350, 1380, 1000),
    "flair": (120, 700, 520, 250, 1200, 900, 600, 300, 1050),
}
_CSF, _GM, _WM, _VESSEL, _OEDEMA, _ENHANCING, _NECROSIS, _CAVITY, _GLIOSIS = range(9)

# Reference brain (semi-axes z, y, x in mm); the structures below are placed for it and scaled with each brain.
_REF_SEMI = np.array([60.0, 86.0, 68.0])
# Lateral ventricle centrelines, points (|x|, y, z) relative to the brain centre, and tube radii: frontal horn tip,
# body, atrium, temporal horn to its tip; the occipital horn branches off the atrium.
_VENTRICLE_MAIN = np.array([(5, -30, 6), (6, -20, 12), (7, -5, 14), (9, 10, 13), (18, 26, 6), (25, 22, -6),
                            (28, 10, -16), (27, -2, -21)], float)
_VENTRICLE_MAIN_R = np.array([2.5, 5.0, 5.0, 5.0, 6.5, 3.5, 3.0, 2.0])
_VENTRICLE_OCC = np.array([(18, 26, 6), (18, 36, 4), (14, 46, 1)], float)
_VENTRICLE_OCC_R = np.array([6.5, 4.0, 1.8])
_VENTRICLE_FLATTEN = 1.5            # ventricles are wider than tall: z counts 1.5 times in their distance
# Deep grey nuclei: centre (|x|, y, z) and semi-axes (x, y, z): thalamus, caudate head, lentiform nucleus.
_DEEP_GREY = (((9, 8, 0), (7, 14, 9)), ((13, -20, 8), (5, 9, 8)), ((22, -4, -2), (5.5, 13, 9)))
# Arterial trees: root (x, y, z) relative to the brain centre (x signed per side) and initial direction.
_ARTERIES = {"mca": ((16, -8, -18), (0.85, 0.1, 0.5)), "aca": ((3, -22, -8), (0.0, -0.25, 1.0)),
             "pca": ((10, 12, -16), (0.3, 0.9, 0.25))}


# --------------------------------------------------------------------------------------------------------------------
# Public types
# --------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PhantomSettings:
    """What one case looks like; every length in mm."""

    voxel_mm: float = 1.0
    landmarks_min: int = 6
    landmarks_max: int = 50
    tumour_radius_mm: tuple[float, float] = (12.0, 25.0)
    mass_effect_mm: float = 8.0       # peak push at the tumour border, baseline
    relaxation: float = 0.3           # share of the mass effect left at follow-up
    random_deformation_mm: float = 3.0  # standard deviation of each displacement component
    noise: float = 0.03               # relative noise level

    def __post_init__(self):
        _check("voxel_mm", self.voxel_mm, 0.5, 12.0)
        if not (isinstance(self.landmarks_min, (int, np.integer)) and isinstance(self.landmarks_max, (int, np.integer))
                and 1 <= self.landmarks_min <= self.landmarks_max <= 200):
            raise ConfigError(f"brain phantom: landmarks_min={self.landmarks_min!r}, landmarks_max="
                              f"{self.landmarks_max!r}; use integers with 1 <= min <= max <= 200")
        low, high = self.tumour_radius_mm
        _check("tumour_radius_mm[0]", low, 4.0, 30.0)
        _check("tumour_radius_mm[1]", high, low, 30.0)
        _check("mass_effect_mm", self.mass_effect_mm, 0.0, 15.0)
        _check("relaxation", self.relaxation, 0.0, 1.0)
        _check("random_deformation_mm", self.random_deformation_mm, 0.0, 10.0)
        _check("noise", self.noise, 0.0, 0.5)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(z, y, x) voxels."""
        return tuple(int(round(n / self.voxel_mm)) for n in NATIVE_MM)


@dataclass
class BrainPair:
    """One case. Images are float32 (z, y, x); landmarks (n, 3) float64 voxel indices in (x, y, z) order.

    Labels: 0 background, 1 CSF, 2 grey matter, 3 white matter, 4 oedema, 5 enhancing tumour (follow-up: the
    enhancing/gliotic cavity rim), 6 necrosis, 7 vessel, 8 resection cavity (follow-up only).
    ``followup_to_baseline`` float32 (3, z, y, x), channels (x, y, z) in voxels: follow-up voxel p corresponds to
    the baseline point p + field[:, p].
    """

    baseline: dict[str, np.ndarray]
    followup: dict[str, np.ndarray]
    baseline_landmarks: np.ndarray
    followup_landmarks: np.ndarray
    landmark_kinds: list[str]
    baseline_labels: np.ndarray
    followup_labels: np.ndarray
    followup_to_baseline: np.ndarray


def _check(name: str, value: float, low: float, high: float) -> None:
    if not (np.isfinite(value) and low <= value <= high):
        raise ConfigError(f"brain phantom: {name}={value!r} is out of range; use a value in [{low}, {high}]")


# --------------------------------------------------------------------------------------------------------------------
# Grids and smooth random fields
# --------------------------------------------------------------------------------------------------------------------

class _Grid:
    """The voxel grid and the node grid (a subset of voxel positions, evenly spread) the smooth fields live on."""

    def __init__(self, shape: tuple[int, int, int], voxel: float):
        self.shape, self.voxel = shape, float(voxel)
        self.half = np.array([n * voxel / 2 for n in shape])
        coarse = voxel < NODE_MM
        self.node_shape = tuple(max(2, math.ceil((n - 1) * voxel / NODE_MM) + 1) if coarse else n for n in shape)
        self.step = tuple((n - 1) / (m - 1) if m > 1 else 1.0 for n, m in zip(shape, self.node_shape))
        self.node_axes = [(np.arange(m) * s + 0.5) * voxel - h
                          for m, s, h in zip(self.node_shape, self.step, self.half)]
        self.node_spacing = np.array(self.step) * voxel
        self.node_origin = np.array([a[0] for a in self.node_axes])

    def mm_to_voxel(self, mm):
        """Points (..., 3) in mm to fractional voxel indices (z, y, x)."""
        return (np.asarray(mm) + self.half) / self.voxel - 0.5

    def mm_to_node(self, mm):
        return (np.asarray(mm) - self.node_origin) / self.node_spacing

    def node_points(self) -> np.ndarray:
        """(3, *node_shape) mm positions of the nodes."""
        return np.stack(np.meshgrid(*self.node_axes, indexing="ij"))

    def voxel_box(self, node_box: tuple[slice, ...]) -> tuple[slice, ...]:
        """The voxels a box of nodes covers."""
        out = []
        for sl, s, n in zip(node_box, self.step, self.shape):
            out.append(slice(math.ceil(sl.start * s - 1e-9), min(n, math.floor((sl.stop - 1) * s + 1e-9) + 1)))
        return tuple(out)

    def to_voxels(self, nodes: np.ndarray, node_box: tuple[slice, ...], voxel_box: tuple[slice, ...]) -> np.ndarray:
        """Trilinear interpolation of node values (already cut to ``node_box``) at the voxels of ``voxel_box``."""
        if all(s == 1.0 for s in self.step):
            return nodes[tuple(slice(v.start - b.start, v.stop - b.start) for v, b in zip(voxel_box, node_box))]
        pos = [np.arange(v.start, v.stop) / s - b.start for v, b, s in zip(voxel_box, node_box, self.step)]
        return _sample_separable(nodes, pos, cubic=False)


def _resample_axis(a: np.ndarray, pos: np.ndarray, axis: int, cubic: bool) -> np.ndarray:
    n = a.shape[axis]
    shape = [1] * a.ndim
    shape[axis] = -1
    i0 = np.floor(pos).astype(np.intp)
    t = (pos - i0).astype(np.float32)
    if cubic:   # uniform cubic B-spline (smoothing, C2), as map_coordinates(order=3, prefilter=False)
        weights = ((1 - t) ** 3 / 6, (3 * t ** 3 - 6 * t ** 2 + 4) / 6, (-3 * t ** 3 + 3 * t ** 2 + 3 * t + 1) / 6,
                   t ** 3 / 6)
        taps = range(-1, 3)
    else:
        i0 = np.clip(i0, 0, max(n - 2, 0))
        t = np.clip((pos - i0).astype(np.float32), 0, 1)
        weights, taps = (1 - t, t), range(2)
    out = None
    for w, k in zip(weights, taps):
        term = np.take(a, np.clip(i0 + k, 0, n - 1), axis=axis)
        term *= w.reshape(shape)
        out = term if out is None else np.add(out, term, out=out)
    return out


def _sample_separable(a: np.ndarray, positions, cubic: bool) -> np.ndarray:
    """``a`` at the tensor grid of fractional indices ``positions`` (one 1-D array per axis), float32."""
    out = np.asarray(a, dtype=np.float32)
    for axis in (2, 1, 0):   # the last axis first, on the smallest array
        out = _resample_axis(out, np.asarray(positions[axis], float), axis, cubic)
    return out


@dataclass(frozen=True)
class _Lattice:
    """A unit-variance smooth random field on a lattice of fixed physical spacing."""

    values: np.ndarray
    origin: np.ndarray
    spacing: float
    cubic: bool

    def at_nodes(self, grid: _Grid) -> np.ndarray:
        pos = [(ax - o) / self.spacing for ax, o in zip(grid.node_axes, self.origin)]
        return _sample_separable(self.values, pos, self.cubic)

    def at_points(self, pts: np.ndarray) -> np.ndarray:
        """``pts`` (3, ...) mm."""
        coords = (pts - self.origin.reshape((3,) + (1,) * (pts.ndim - 1))) / self.spacing
        return ndi.map_coordinates(self.values, coords, order=3 if self.cubic else 1, prefilter=False,
                                   mode="nearest", output=np.float32)


def _random_lattice(rng, low_mm, high_mm, spacing: float, sigma: float, cubic: bool) -> _Lattice:
    """White noise smoothed by ``sigma`` lattice steps, scaled to unit standard deviation."""
    low, high = np.asarray(low_mm, float), np.asarray(high_mm, float)
    shape = tuple(int(np.ceil((h - lo) / spacing)) + 1 for lo, h in zip(low, high))
    field = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma, mode="wrap")
    sampled = field
    if cubic:   # the B-spline smooths further: scale so that the field it evaluates has unit variance
        for axis in range(3):
            sampled = ndi.correlate1d(sampled, [1 / 6, 2 / 3, 1 / 6], axis=axis, mode="wrap")
    return _Lattice(field / max(float(sampled.std()), 1e-6), low, spacing, cubic)


# --------------------------------------------------------------------------------------------------------------------
# Healthy anatomy
# --------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Tube:
    """A polyline (m, 3) mm (z, y, x) with a radius per point (distances to it count z ``_VENTRICLE_FLATTEN``-fold)."""

    points: np.ndarray
    radii: np.ndarray


@dataclass(frozen=True)
class _Anatomy:
    centre: np.ndarray          # mm (z, y, x)
    semi: np.ndarray            # brain semi-axes (z, y, x)
    egg: float                  # widening towards the back
    flat: float                 # flattening of the base
    surface: _Lattice
    surface_amp: float
    folds: _Lattice
    sulcal_depth: _Lattice
    sulcal_depth_mm: tuple[float, float]
    sulcal_halfwidth: float
    texture: _Lattice
    thickness_mm: tuple[float, float]
    midline: np.ndarray         # amplitudes and phases of the fissure's sway
    callosum: tuple[float, float]
    ventricles: tuple[_Tube, ...]
    third_ventricle: tuple[np.ndarray, np.ndarray]
    horn_tips: np.ndarray       # (6, 3) mm
    deep: tuple[tuple[np.ndarray, np.ndarray], ...]
    vessel_points: np.ndarray   # (n, 3) mm samples of the vessel centrelines
    vessel_radii: np.ndarray
    bifurcations: np.ndarray    # (b, 3) mm


def _to_zyx(xyz, side: float = 1.0) -> np.ndarray:
    """(|x|, y, z) offsets of the tables above to (z, y, x), x on ``side``."""
    xyz = np.asarray(xyz, float)
    return np.stack([xyz[..., 2], xyz[..., 1], side * xyz[..., 0]], axis=-1)


def _normalised_radius(anat: _Anatomy, pts, surface=None):
    """rho: < 1 inside the brain. ``pts`` (3, ...) mm; ``surface`` the perturbation field at those points."""
    c = anat.centre.reshape((3,) + (1,) * (np.ndim(pts[0])))
    z, y, x = ((pts[i] - c[i]) / anat.semi[i] for i in range(3))
    x = x / (1 + anat.egg * np.clip(y, -1.5, 1.5))
    z = z / (1 - anat.flat * 0.5 * (1 - np.tanh(4 * z)))
    rho = np.sqrt(x * x + y * y + z * z)
    return rho if surface is None else rho / (1 + anat.surface_amp * surface)


def _inside(anat: _Anatomy, pts: np.ndarray, margin_mm: float) -> np.ndarray:
    """Points (3, n) at least about ``margin_mm`` inside the brain surface."""
    rho = _normalised_radius(anat, pts, anat.surface.at_points(pts))
    return rho < 1 - margin_mm / anat.semi.min()


def _catmull_rom(points: np.ndarray, values: np.ndarray, step_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """A smooth curve through ``points`` sampled about every ``step_mm``, ``values`` interpolated linearly."""
    padded = np.vstack([2 * points[0] - points[1], points, 2 * points[-1] - points[-2]])
    out, vals = [], []
    for i in range(len(points) - 1):
        p0, p1, p2, p3 = padded[i:i + 4]
        n = max(2, int(np.ceil(np.linalg.norm(p2 - p1) / step_mm)))
        t = np.linspace(0, 1, n, endpoint=False)[:, None]
        out.append(0.5 * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3))
        vals.append(values[i] + (values[i + 1] - values[i]) * t[:, 0])
    return np.vstack(out + [points[-1:]]), np.concatenate(vals + [values[-1:]])


def _draw_ventricles(rng, centre, scale, size) -> tuple[tuple[_Tube, ...], np.ndarray]:
    tubes, tips = [], []
    spread = np.array([max(size, 1.0), 1.0, 1.0])      # (|x|, y, z): larger ventricles sit further apart
    for side in (-1.0, 1.0):
        main = _VENTRICLE_MAIN * spread + rng.normal(0, 1.2, _VENTRICLE_MAIN.shape)
        occ = _VENTRICLE_OCC * spread + rng.normal(0, 1.2, _VENTRICLE_OCC.shape)
        occ[0] = main[4]                                # the occipital horn leaves the atrium
        main, occ = (centre + _to_zyx(p, side) * scale for p in (main, occ))
        r_main, r_occ = _VENTRICLE_MAIN_R * size, _VENTRICLE_OCC_R * size
        tubes += [_Tube(*_catmull_rom(main, r_main, 3.0)), _Tube(*_catmull_rom(occ, r_occ, 3.0))]
        # Horn tips: the apex of each end cap (a sphere of the end radius in the flattened metric).
        for end, before, radius in ((main[0], main[1], r_main[0]), (main[-1], main[-2], r_main[-1]),
                                    (occ[-1], occ[-2], r_occ[-1])):
            tangent = end - before
            tips.append(end + radius * tangent / np.linalg.norm(tangent * [_VENTRICLE_FLATTEN, 1, 1]))
    return tuple(tubes), np.array(tips)


def _draw_vessels(rng, anat: _Anatomy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arterial trees grown from the base of the brain: both middle cerebral arteries and one to three others."""
    scale = anat.semi / _REF_SEMI
    others = [("aca", -1.0), ("aca", 1.0), ("pca", -1.0), ("pca", 1.0)]
    chosen = [("mca", -1.0), ("mca", 1.0)] + [others[i] for i in rng.permutation(4)[:rng.integers(1, 4)]]
    samples, radii, forks = [], [], []
    for name, side in chosen:
        root, direction = _ARTERIES[name]
        start = anat.centre + _to_zyx(root, side) * scale + rng.normal(0, 1.5, 3)
        _grow(rng, anat, start, _to_zyx(direction, side), rng.uniform(1.4, 1.8), 0, samples, radii, forks)
    return np.vstack(samples), np.concatenate(radii), np.array(forks).reshape(-1, 3)


def _grow(rng, anat, start, direction, radius, generation, samples, radii, forks) -> None:
    """One vessel segment (four slightly bending steps); it forks in two unless it leaves the brain."""
    direction = direction / np.linalg.norm(direction)
    length = rng.uniform(13, 19) * 0.85 ** generation
    path = [start]
    for _ in range(4):
        for wiggle in (0.15, 0.5, 0.9):    # a vessel bends away from the surface and the ventricles before it stops
            trial = direction + rng.normal(0, wiggle, 3)
            trial /= np.linalg.norm(trial)
            nxt = path[-1] + trial * length / 4
            if _inside(anat, nxt[:, None], 3.0)[0] and _ventricle_sd(anat, nxt[:, None])[0] > 1.5:
                break
        else:
            break
        direction = trial
        path.append(nxt)
    if len(path) > 1:
        dense, _ = _catmull_rom(np.array(path), np.zeros(len(path)), VESSEL_STEP_MM)
        samples.append(dense)
        radii.append(np.full(len(dense), radius))
    if len(path) < 5 or generation >= 4:
        return
    forks.append(path[-1])
    axis = np.cross(direction, rng.normal(size=3))
    axis /= np.linalg.norm(axis)
    for sign in (-1.0, 1.0):
        angle = sign * np.radians(rng.uniform(20, 42))
        child = direction * np.cos(angle) + np.cross(axis, direction) * np.sin(angle)
        _grow(rng, anat, path[-1], child, radius * 0.78, generation + 1, samples, radii, forks)


def _draw_anatomy(rng) -> _Anatomy:
    semi = _REF_SEMI * rng.uniform(0.94, 1.05, 3)
    centre = np.array([rng.normal(2, 1.5), rng.normal(4, 2.5), rng.normal(0, 1.5)])
    scale = semi / _REF_SEMI
    low, high = centre - semi * 1.12 - 8, centre + semi * 1.12 + 8
    surface = _random_lattice(rng, low, high, 12.0, 1.0, True)
    folds = _random_lattice(rng, low, high, 2.0, 2.0, False)        # sulci some 15-20 mm apart
    sulcal_depth = _random_lattice(rng, low, high, 12.0, 1.0, True)
    texture = _random_lattice(rng, low, high, 2.0, 1.0, False)
    size = rng.uniform(0.75, 1.3)
    ventricles, tips = _draw_ventricles(rng, centre, scale, size)
    third = (centre + _to_zyx((0, 5, 0)) * scale + rng.normal(0, 1, 3), np.array([8.0, 14.0, 1.2 * size]) * scale)
    deep = tuple((centre + _to_zyx(c, side) * scale, _to_zyx(s) * scale * rng.uniform(0.9, 1.1))
                 for c, s in _DEEP_GREY for side in (-1.0, 1.0))
    anat = _Anatomy(
        centre=centre, semi=semi, egg=rng.uniform(0.05, 0.1), flat=rng.uniform(0.1, 0.18), surface=surface,
        surface_amp=rng.uniform(0.02, 0.035), folds=folds, sulcal_depth=sulcal_depth,
        sulcal_depth_mm=(rng.uniform(12, 16), 3.5), sulcal_halfwidth=rng.uniform(0.5, 0.9), texture=texture,
        thickness_mm=(rng.uniform(2.4, 2.9), 0.35), midline=rng.uniform(-1, 1, 6),
        callosum=(rng.uniform(20, 24) * scale[0], rng.normal(0, 2)), ventricles=ventricles, third_ventricle=third,
        horn_tips=tips, deep=deep, vessel_points=np.zeros((0, 3)), vessel_radii=np.zeros(0),
        bifurcations=np.zeros((0, 3)))
    points, radii, forks = _draw_vessels(rng, anat)
    return replace(anat, vessel_points=points, vessel_radii=radii, bifurcations=forks)


def _ventricle_sd(anat: _Anatomy, pts: np.ndarray, far: float = 6.0) -> np.ndarray:
    """Signed distance (mm, flattened metric, clipped at ``far``) to the ventricles, negative inside; pts (3, n)."""
    k = np.array([_VENTRICLE_FLATTEN, 1, 1])
    a = np.vstack([t.points[:-1] for t in anat.ventricles]) * k
    ab = np.vstack([t.points[1:] for t in anat.ventricles]) * k - a
    ra = np.concatenate([t.radii[:-1] for t in anat.ventricles])
    rb = np.concatenate([t.radii[1:] for t in anat.ventricles])
    rel = (pts.T * k)[:, None, :] - a[None]
    t = np.clip((rel * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0, 1)
    dist = np.sqrt(((rel - t[..., None] * ab) ** 2).sum(-1)) - (ra + (rb - ra) * t)
    centre, semi = anat.third_ventricle
    rho = np.sqrt((((pts - centre[:, None]) / semi[:, None]) ** 2).sum(0))
    return np.minimum(np.minimum(dist.min(1), far), (rho - 1) * semi.min())


def _ventricle_sd_nodes(anat: _Anatomy, grid: _Grid, far: float = 6.0) -> np.ndarray:
    """The ventricles' signed distance on the node grid, each segment evaluated only in its own neighbourhood."""
    sd = np.full(grid.node_shape, far, np.float32)
    k = np.array([_VENTRICLE_FLATTEN, 1, 1])
    for tube in anat.ventricles:
        for j in range(len(tube.points) - 1):
            a, b = tube.points[j], tube.points[j + 1]
            pad = max(tube.radii[j], tube.radii[j + 1]) + far + 1
            box = _axis_box(grid, np.minimum(a, b) - pad, np.maximum(a, b) + pad)
            if box is None:
                continue
            z, y, x = np.meshgrid(*(ax[s] for ax, s in zip(grid.node_axes, box)), indexing="ij", sparse=True)
            p = [z * k[0], y, x]
            ab = (b - a) * k
            rel = [p[i] - a[i] * k[i] for i in range(3)]
            t = np.clip(sum(rel[i] * ab[i] for i in range(3)) / max(float(ab @ ab), 1e-12), 0, 1)
            dist = np.sqrt(sum((rel[i] - t * ab[i]) ** 2 for i in range(3)))
            np.minimum(sd[box], dist - (tube.radii[j] + (tube.radii[j + 1] - tube.radii[j]) * t), out=sd[box])
    centre, semi = anat.third_ventricle
    box = _axis_box(grid, centre - semi - far, centre + semi + far)
    if box is not None:
        z, y, x = np.meshgrid(*(ax[s] for ax, s in zip(grid.node_axes, box)), indexing="ij", sparse=True)
        rho = np.sqrt(((z - centre[0]) / semi[0]) ** 2 + ((y - centre[1]) / semi[1]) ** 2
                      + ((x - centre[2]) / semi[2]) ** 2)
        np.minimum(sd[box], (rho - 1) * semi.min(), out=sd[box])
    return sd


def _axis_box(grid: _Grid, low, high):
    box = tuple(slice(int(np.searchsorted(ax, lo)), int(np.searchsorted(ax, hi, side="right")))
                for ax, lo, hi in zip(grid.node_axes, low, high))
    return None if any(s.stop <= s.start for s in box) else box


def _anatomy_fields(anat: _Anatomy, grid: _Grid) -> dict[str, np.ndarray]:
    """The healthy anatomy's smooth fields on the node grid (float32, mm unless said otherwise)."""
    z, y, x = np.meshgrid(*grid.node_axes, indexing="ij", sparse=True)
    rho = _normalised_radius(anat, (z, y, x), anat.surface.at_nodes(grid))
    depth = (1 - rho) / np.maximum(_gradient_norm(rho, grid), 1e-4)
    # Sulci: the zero set of a random field on the brain surface, carried inwards along rays from the centre.
    base = np.maximum(_normalised_radius(anat, (z, y, x)), 0.3)
    c = anat.centre
    projected = np.stack(np.broadcast_arrays(c[0] + (z - c[0]) / base, c[1] + (y - c[1]) / base,
                                             c[2] + (x - c[2]) / base))
    fold = anat.folds.at_points(projected)
    del projected
    sulc = np.clip(fold / np.maximum(_gradient_norm(fold, grid), 1e-4), -8, 8)
    mean, spread = anat.sulcal_depth_mm
    fundus = depth - np.clip(mean + spread * anat.sulcal_depth.at_nodes(grid), 6, 24)
    # Midline fissure: a gently swaying plane, down to the top of the corpus callosum (further down at the poles).
    a = anat.midline
    rel_y, rel_z = (y - c[1]) / anat.semi[1], (z - c[0]) / anat.semi[0]
    mid = (x - c[2]) - 1.5 * (a[0] * np.sin(2.0 * rel_y + 3 * a[1]) + a[2] * np.sin(2.5 * rel_z + 3 * a[3]))
    height, shift = anat.callosum
    midlimit = (z - c[0]) - (height - 30 * ((y - c[1] - shift) / (38 * anat.semi[1] / _REF_SEMI[1])) ** 2)
    fields = {"depth": depth, "sulc": sulc, "fundus": fundus, "mid": mid, "midlimit": midlimit,
              "vent": _ventricle_sd_nodes(anat, grid), "deep": _deep_grey_sd(anat, (z, y, x)),
              "tex": anat.texture.at_nodes(grid)}
    return {k: np.ascontiguousarray(np.broadcast_to(v, grid.node_shape), dtype=np.float32) for k, v in fields.items()}


def _deep_grey_sd(anat: _Anatomy, pts, far: float = 6.0):
    sd = far
    for centre, semi in anat.deep:
        rho = np.sqrt(sum(((pts[i] - centre[i]) / semi[i]) ** 2 for i in range(3)))
        sd = np.minimum(sd, (rho - 1) * semi.min())
    return sd


def _gradient_norm(field: np.ndarray, grid: _Grid) -> np.ndarray:
    g = np.gradient(field, *grid.node_spacing)
    return np.sqrt(g[0] ** 2 + g[1] ** 2 + g[2] ** 2)


# --------------------------------------------------------------------------------------------------------------------
# Tumour and deformations
# --------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Lobes:
    """A smooth random function of direction: sum of cosines of projections on random axes."""

    axes: np.ndarray
    freq: np.ndarray
    phase: np.ndarray
    amp: np.ndarray

    @classmethod
    def draw(cls, rng, k: int, amplitude: float) -> _Lobes:
        axes = rng.normal(size=(k, 3))
        return cls(axes / np.linalg.norm(axes, axis=1, keepdims=True), rng.uniform(1.5, 3.5, k),
                   rng.uniform(0, 2 * np.pi, k), amplitude * rng.uniform(0.5, 1.0, k) / np.sqrt(k))

    def __call__(self, u) -> np.ndarray:
        """``u`` (3, ...) unit vectors."""
        out = 0.0
        for axis, f, ph, a in zip(self.axes, self.freq, self.phase, self.amp):
            out = out + a * np.cos(f * (axis[0] * u[0] + axis[1] * u[1] + axis[2] * u[2]) + ph)
        return out


@dataclass(frozen=True)
class _Tumour:
    centre: np.ndarray
    radius: float
    lobes: _Lobes
    rim_mm: float
    oedema_mm: float
    oedema_lobes: _Lobes
    resection: float            # share of the tumour radius resected
    residual_oedema: float      # share of the oedema's reach left at follow-up
    midline_offset: float       # x of the tumour centre from the brain's midline plane, mm

    def boundary(self, u):
        return self.radius * (1 + self.lobes(u))

    def oedema_reach(self, u):
        return self.oedema_mm * np.clip(1 + self.oedema_lobes(u), 0.3, 1.7)

    def rim(self, u):
        return self.rim_mm * np.clip(1 + 0.5 * self.oedema_lobes(u), 0.5, 1.6)


def _draw_tumour(rng, anat: _Anatomy, settings: PhantomSettings) -> _Tumour:
    """A glioma in one hemisphere, some 8 mm or more below the brain surface in every direction."""
    radius = rng.uniform(*settings.tumour_radius_mm)
    dirs = _fibonacci_sphere(64)
    side = rng.choice([-1.0, 1.0])
    for attempt in range(400):
        r = radius * (1 - 0.3 * attempt / 400)      # very large tumours that fit nowhere shrink
        unit = rng.uniform(-1, 1, 3)
        unit[2] = side * abs(unit[2])
        centre = anat.centre + unit * anat.semi * 0.8
        lateral = abs(centre[2] - anat.centre[2])
        exit_mm = _ray_exit(centre, dirs.T, anat.centre, anat.semi * 0.9)
        if lateral > 0.75 * r + 8 and exit_mm.min() > r + 8:
            radius = r
            break
    else:
        raise RuntimeError("brain phantom: found no place for the tumour")
    return _Tumour(centre, radius, _Lobes.draw(rng, 6, 0.22), rng.uniform(3.0, 6.0), rng.uniform(6.0, 18.0),
                   _Lobes.draw(rng, 6, 0.6), rng.uniform(0.85, 1.0), rng.uniform(0.3, 0.6),
                   centre[2] - anat.centre[2])


def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    polar, azimuth = np.arccos(1 - 2 * i / n), np.pi * (1 + 5 ** 0.5) * i
    return np.stack([np.cos(polar), np.sin(polar) * np.sin(azimuth), np.sin(polar) * np.cos(azimuth)], axis=1)


def _ray_exit(origin, u, centre, semi):
    """Distance from ``origin`` (inside the ellipsoid) along unit vectors ``u`` (3, ...) to the ellipsoid."""
    shape = (3,) + (1,) * (u.ndim - 1)
    w = ((origin - centre) / semi).reshape(shape)
    v = u / semi.reshape(shape)
    a = (v * v).sum(0)
    b = (w * v).sum(0)
    c = (w * w).sum(0) - 1
    return (-b + np.sqrt(np.maximum(b * b - a * c, 0))) / np.maximum(a, 1e-12)


@dataclass(frozen=True)
class _MassEffect:
    """The tumour's push along rays from its centre: tissue at A-radius r - p(r) sits at radius r.

    Inside the tumour p = s (1.5 q - 0.5 q^3), q = r / R; outside it falls as s (1 - 3 t^2 + 2 t^3), t = (r - R) / L,
    to nothing at r = R + L. Per ray, L is the room to the skull (15 mm at least, ``reach`` at most) and
    s <= min(0.45 R, 0.3 L), so dp/dr <= 0.675: the map is monotone along every ray and never folds.
    """

    centre: np.ndarray
    radius: float
    peak: float
    room_centre: np.ndarray
    room_semi: np.ndarray
    reach: float
    scale: float = 1.0

    def _ray(self, u):
        room = _ray_exit(self.centre, u, self.room_centre, self.room_semi) - self.radius
        length = np.clip(room, 15.0, self.reach)
        return self.scale * np.minimum(np.minimum(self.peak, 0.3 * length), 0.45 * self.radius), length

    def _push(self, r, s, length):
        q = np.minimum(r / self.radius, 1.0)
        t = np.clip((r - self.radius) / length, 0.0, 1.0)
        inside = r < self.radius
        p = np.where(inside, s * (1.5 * q - 0.5 * q ** 3), s * (1 - 3 * t * t + 2 * t ** 3))
        slope = np.where(inside, 1.5 * s * (1 - q * q) / self.radius, 6 * s * t * (t - 1) / length)
        return p, slope

    def _polar(self, pts):
        rel = pts - self.centre.reshape((3,) + (1,) * (pts.ndim - 1))
        r = np.sqrt((rel * rel).sum(0))
        u = rel / np.maximum(r, 1e-9)
        u[0][r <= 1e-9] = 1.0           # any direction at the centre, where the push is nil
        return r, u

    def displacement(self, pts: np.ndarray) -> np.ndarray:
        """d(x) (3, ...) mm at points x (3, ...): x + d(x) is the healthy position."""
        r, u = self._polar(pts)
        out = np.zeros(pts.shape)
        near = r < self.radius + self.reach         # p vanishes beyond
        if near.any():
            s, length = self._ray(u[:, near])
            out[:, near] = -self._push(r[near], s, length)[0] * u[:, near]
        return out

    def invert(self, target: np.ndarray) -> np.ndarray:
        """x with x + d(x) = target, by Newton along the ray (r - p(r) = rho has its root in [rho, rho + s])."""
        rho, u = self._polar(target)
        out = np.array(target, dtype=float)
        near = rho < self.radius + self.reach
        if near.any():
            rho_n, u_n = rho[near], u[:, near]
            s, length = self._ray(u_n)
            r = rho_n + self._push(rho_n, s, length)[0]
            for _ in range(12):
                p, slope = self._push(r, s, length)
                r = np.clip(r - (r - p - rho_n) / (1 - slope), rho_n, rho_n + s)
            out[:, near] = self.centre[:, None] + r * u_n
        return out


@dataclass(frozen=True)
class _FollowupWarp:
    """d_F = relaxed mass effect + smooth random field (trilinear between nodes) + rigid motion about the brain."""

    mass: _MassEffect
    random_nodes: np.ndarray    # (3, *node_shape) mm
    rotation: np.ndarray
    pivot: np.ndarray
    shift: np.ndarray
    grid: _Grid

    def _rigid(self, pts):
        shape = (3,) + (1,) * (pts.ndim - 1)
        rel = pts - self.pivot.reshape(shape)
        return np.tensordot(self.rotation, rel, axes=1) - rel + self.shift.reshape(shape)

    def at_nodes(self, nodes: np.ndarray) -> np.ndarray:
        return self.mass.displacement(nodes) + self._rigid(nodes) + self.random_nodes

    def displacement(self, pts: np.ndarray) -> np.ndarray:
        """pts (3, n)."""
        idx = self.grid.mm_to_node(pts.T).T
        rnd = np.stack([ndi.map_coordinates(c, idx, order=1, mode="nearest") for c in self.random_nodes])
        return self.mass.displacement(pts) + self._rigid(pts) + rnd

    def invert(self, target: np.ndarray) -> np.ndarray:
        """Fixed point x = target - d(x); d_F is a contraction (its gradient stays well below 1)."""
        x = target.copy()
        for _ in range(80):
            nxt = target - self.displacement(x)
            done = np.abs(nxt - x).max() < 1e-6
            x = nxt
            if done:
                break
        return x


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _followup_warp(rng, anat, mass_f, settings, grid, nodes) -> tuple[_FollowupWarp, np.ndarray]:
    """The follow-up's warp and its displacement at the nodes."""
    random = [_random_lattice(rng, anat.centre - 150, anat.centre + 150, 15.0, 1.5, True) for _ in range(3)]
    rotation = _rotation(rng.normal(size=3), np.radians(rng.uniform(0, 2)))
    shift = rng.normal(size=3)
    shift *= rng.uniform(0, 2) / np.linalg.norm(shift)
    amp = settings.random_deformation_mm      # standard deviation of each component
    warp = _FollowupWarp(mass_f, np.stack([amp * f.at_nodes(grid) for f in random]), rotation, anat.centre, shift,
                         grid)
    disp = warp.at_nodes(nodes)
    # Extreme settings: damp the random part until it shrinks no volume element to less than a quarter of what
    # the mass effect and the rigid motion (never folding by construction) leave of it.
    sub = (slice(None), slice(None, None, 2), slice(None, None, 2), slice(None, None, 2))
    spacing = grid.node_spacing * 2
    det_without = _jacobian_det((disp - warp.random_nodes)[sub], spacing)
    for _ in range(8):
        if (_jacobian_det(disp[sub], spacing) / det_without).min() > 0.25:
            break
        disp -= 0.3 * warp.random_nodes
        warp = replace(warp, random_nodes=warp.random_nodes * 0.7)
    return warp, disp


def _jacobian_det(disp: np.ndarray, spacing) -> np.ndarray:
    """det(I + grad d) of a (3, ...) mm displacement on a grid of ``spacing`` mm."""
    g = [np.gradient(disp[i], *spacing) for i in range(3)]
    j = [[g[i][k] + (i == k) for k in range(3)] for i in range(3)]
    det = (j[0][0] * (j[1][1] * j[2][2] - j[1][2] * j[2][1]) - j[0][1] * (j[1][0] * j[2][2] - j[1][2] * j[2][0])
           + j[0][2] * (j[1][0] * j[2][1] - j[1][1] * j[2][0]))
    return det


# --------------------------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Scan:
    """Per-scan appearance: class intensities (modality -> 9 values), gains and bias-field coefficients."""

    contrast: dict[str, np.ndarray]
    gain: dict[str, float]
    bias: dict[str, np.ndarray]


def _draw_scans(rng) -> tuple[_Scan, _Scan]:
    contrast = {m: np.array(v, float) * rng.uniform(0.95, 1.05, 9) for m, v in _CONTRAST.items()}
    scans = []
    for _ in range(2):
        gain = {m: float(rng.uniform(0.92, 1.08)) for m in MODALITIES}
        bias = {m: rng.normal(0, 0.07, 7) for m in MODALITIES}
        scans.append(_Scan(contrast, gain, bias))
    return scans[0], scans[1]


def _ramp(s: np.ndarray, width: float) -> np.ndarray:
    """0 -> 1 across s = 0 over ``width`` mm: a voxel's partial volume."""
    out = s * np.float32(1 / width)
    out += np.float32(0.5)
    return np.clip(out, 0, 1, out=out)


def _tissue(f: dict[str, np.ndarray], local: dict[str, tuple], anat: _Anatomy, width: float):
    """Tissue index t (0 background, 1 CSF, 2 grey, 3 white, fractional at boundaries) and labels, per voxel.

    ``f`` holds the fields everywhere; ``local`` the fields that matter only in a sub-box (sub-box, fields).
    """
    sulcus = np.sqrt(f["sulc"] ** 2 + np.maximum(f["fundus"], 0) ** 2) - np.float32(anat.sulcal_halfwidth)
    pial = np.minimum(f["depth"], sulcus, out=sulcus)
    box, mid = local["midline"]
    fissure = np.sqrt(mid["mid"] ** 2 + np.maximum(-mid["midlimit"], 0) ** 2) - np.float32(0.9)
    np.minimum(pial[box], fissure, out=pial[box])
    thick0, thick_amp = anat.thickness_mm
    thickness = np.clip(thick0 + thick_amp * f["tex"], 1.8, 3.6)
    t = _ramp(pial, width)
    t += _ramp(pial - thickness, width)
    t += 1
    box, central = local["central"]
    np.minimum(t[box], 2 + _ramp(central["deep"], width), out=t[box])
    np.minimum(t[box], 1 + 2 * _ramp(central["vent"], width), out=t[box])
    t *= _ramp(f["depth"], width)
    labels = (1 + (t >= 1.5).astype(np.uint8) + (t >= 2.5)).astype(np.uint8)
    labels[f["depth"] < 0] = 0
    return t, labels


def _splat_vessels(points_vox: np.ndarray, radii: np.ndarray, voxel: float, box) -> np.ndarray:
    """Vessel fraction in ``box``: the largest tube partial volume over the centreline samples (n, 3) voxels."""
    shape = tuple(s.stop - s.start for s in box)
    out = np.zeros(int(np.prod(shape)), np.float32)
    if len(points_vox) == 0:
        return out.reshape(shape)
    k = int(np.ceil((radii.max() + voxel) / voxel))
    off = np.stack(np.meshgrid(*[np.arange(-k, k + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
    start = np.array([s.start for s in box])
    for chunk in range(0, len(points_vox), 2048):
        pts, r = points_vox[chunk:chunk + 2048], radii[chunk:chunk + 2048]
        cells = np.rint(pts).astype(np.intp)[:, None, :] + off[None]
        dist = np.sqrt(((cells - pts[:, None, :]) ** 2).sum(-1)) * voxel
        value = np.clip((r[:, None] - dist) / voxel + 0.5, 0, 1)
        local = cells - start
        keep = (value > 0) & np.all((local >= 0) & (local < shape), axis=-1)
        np.maximum.at(out, np.ravel_multi_index(tuple(local[keep].T), shape), value[keep].astype(np.float32))
    return out.reshape(shape)


@dataclass
class _Layer:
    """Intensity overrides in a sub-box of the work box: fractions (summing to <= 1) of classes painted over tissue."""

    box: tuple[slice, ...]
    fractions: dict[int, np.ndarray]

    def total(self) -> np.ndarray:
        return sum(self.fractions.values())


def _lesion_box(grid: _Grid, tumour: _Tumour, fine_box, margin_mm: float):
    """The voxels (relative to ``fine_box``) the tumour and its oedema can reach."""
    dirs = _fibonacci_sphere(2000).T
    reach = float((tumour.boundary(dirs) + tumour.oedema_reach(dirs)).max()) + margin_mm + grid.voxel
    lo = np.floor(grid.mm_to_voxel(tumour.centre - reach)).astype(int)
    hi = np.ceil(grid.mm_to_voxel(tumour.centre + reach)).astype(int) + 1
    return tuple(slice(int(np.clip(lo[i], f.start, f.stop)) - f.start, int(np.clip(hi[i], f.start, f.stop)) - f.start)
                 for i, f in enumerate(fine_box))


def _absolute(box, fine_box) -> tuple[slice, ...]:
    return tuple(slice(b.start + f.start, b.stop + f.start) for b, f in zip(box, fine_box))


def _lesion_frame(grid: _Grid, box_abs, centre, field_vox=None):
    """Distance (mm) from ``centre`` of every voxel of ``box_abs`` (of its baseline position when the follow-up
    field is given) and its x offset, the unit directions on a sub-lattice of about 3 mm, and the map from that
    sub-lattice to the voxels: direction functions are smooth, so they need not be evaluated voxel by voxel."""
    full = [np.arange(s.start, s.stop) for s in box_abs]
    step = max(1, int(round(3.0 / grid.voxel)))
    coarse = [np.unique(np.r_[a[::step], a[-1]]) for a in full]

    def rel(axes, field):
        mm = [(a + 0.5) * grid.voxel - h - c for a, h, c in zip(axes, grid.half, centre)]
        out = np.stack(np.broadcast_arrays(*np.meshgrid(*mm, indexing="ij", sparse=True))).astype(np.float32)
        if field is not None:
            out += field[::-1] * np.float32(grid.voxel)     # channels (x, y, z) -> (z, y, x)
        return out

    whole = rel(full, None if field_vox is None else field_vox[(slice(None),) + tuple(box_abs)])
    r = np.sqrt((whole ** 2).sum(0))
    lateral = whole[2]
    sub = rel(coarse, None if field_vox is None else field_vox[np.ix_((0, 1, 2), *coarse)])
    u = sub / np.maximum(np.sqrt((sub ** 2).sum(0)), 1e-6)
    pos = [np.interp(a, c, np.arange(len(c))) for a, c in zip(full, coarse)]
    return r, lateral, u, lambda values: _sample_separable(values, pos, cubic=False)


def _oedema_weight(t: np.ndarray, lateral: np.ndarray, tumour: _Tumour, width: float) -> np.ndarray:
    """Oedema spreads in white matter and only a little into the cortex, never into CSF nor across the falx."""
    grey_white = np.clip(t - 1, 0, 1)
    white = np.clip(t - 2, 0, 1)
    own_side = _ramp(np.sign(tumour.midline_offset) * (lateral + tumour.midline_offset), width)
    return (0.25 * (grey_white - white) + white) * own_side


def _baseline_lesion(grid, tumour, t, labels, fine_box) -> _Layer:
    box = _lesion_box(grid, tumour, fine_box, 4.0)
    r, lateral, u, to_voxels = _lesion_frame(grid, _absolute(box, fine_box), tumour.centre)
    edge = to_voxels(tumour.boundary(u))
    tumour_frac = _ramp(edge - r, grid.voxel)
    necrosis = _ramp(edge - to_voxels(tumour.rim(u)) - r, grid.voxel)
    oedema = _ramp(edge + to_voxels(tumour.oedema_reach(u)) - r, grid.voxel)
    oedema *= (1 - tumour_frac) * _oedema_weight(t[box], lateral, tumour, grid.voxel)
    sub = labels[box]
    brain = sub > 0
    sub[brain & (oedema > 0.5)] = LABELS["oedema"]
    sub[brain & (tumour_frac > 0.5)] = LABELS["enhancing"]
    sub[brain & (necrosis > 0.5)] = LABELS["necrosis"]
    return _Layer(box, {_OEDEMA: oedema, _ENHANCING: tumour_frac - necrosis, _NECROSIS: necrosis})


def _followup_lesion(grid, tumour, t, labels, fine_box, field_vox) -> _Layer:
    """The follow-up voxels whose baseline counterpart was tumour are cavity (all of it but the margin left),
    lined by a thin gliotic/enhancing rim, in a smaller and fainter oedema."""
    box = _lesion_box(grid, tumour, fine_box, 12.0)
    r, lateral, u, to_voxels = _lesion_frame(grid, _absolute(box, fine_box), tumour.centre, field_vox)
    edge = to_voxels(tumour.resection * tumour.boundary(u))
    cavity = _ramp(edge - r, grid.voxel)
    rim = _ramp(edge + 2.0 - r, grid.voxel) - cavity
    oedema = _ramp(edge + to_voxels(tumour.residual_oedema * tumour.oedema_reach(u)) - r, grid.voxel)
    oedema *= (1 - cavity - rim) * _oedema_weight(t[box], lateral, tumour, grid.voxel)
    sub = labels[box]
    brain = sub > 0
    sub[brain & (oedema > 0.5)] = LABELS["oedema"]
    sub[brain & (rim > 0.5)] = LABELS["enhancing"]
    sub[brain & (cavity > 0.5)] = LABELS["cavity"]
    return _Layer(box, {_OEDEMA: oedema * np.float32(0.7), _GLIOSIS: rim, _CAVITY: cavity})


def _bias(coef: np.ndarray, where, fine_box, grid_shape) -> np.ndarray:
    """A smooth multiplicative field at voxels ``where`` (indices in the work box): per-axis quadratic
    exponentials (so one exp per axis, not per voxel) and a mild cross term."""
    axes = [(np.arange(s.start, s.stop) + 0.5) / n * 2 - 1 for s, n in zip(fine_box, grid_shape)]
    per_axis = [np.exp(coef[2 * i] * a + coef[2 * i + 1] * (a * a - 1 / 3)).astype(np.float32)
                for i, a in enumerate(axes)]
    out = per_axis[0][where[0]] * per_axis[1][where[1]]
    out *= per_axis[2][where[2]]
    out *= 1 + np.float32(coef[6]) * axes[1].astype(np.float32)[where[1]] * axes[2].astype(np.float32)[where[2]]
    return out


def _render(rng, scan: _Scan, t, labels, vessel, layer: _Layer, tex, fine_box, grid, noise):
    """The four images at the brain voxels (flat indices into the work box, returned too); background stays 0."""
    brain = np.flatnonzero(labels)
    t_b, tex_b = t.reshape(-1)[brain], tex.reshape(-1)[brain]
    c1, c2, c3 = np.clip(t_b, 0, 1), np.clip(t_b - 1, 0, 1), np.clip(t_b - 2, 0, 1)
    vessel_b = vessel.reshape(-1)[brain]
    vessel_at = np.flatnonzero(vessel_b)
    vessel_frac = vessel_b[vessel_at]
    lookup = np.full(t.size, -1, np.intp)
    lookup[brain] = np.arange(len(brain))
    lesion_at = lookup.reshape(t.shape)[layer.box].reshape(-1)
    keep = lesion_at >= 0
    lesion_at = lesion_at[keep]
    fractions = {k: f.reshape(-1)[keep] for k, f in layer.fractions.items()}
    lesion_rest = 1 - sum(fractions.values())
    del lookup
    where = np.unravel_index(brain, t.shape)
    # One noise draw per scan, read at a distinct offset for each image and component: independent per voxel.
    pad = 2 * len(MODALITIES)
    pool = rng.standard_normal(len(brain) + pad, dtype=np.float32)
    offsets = rng.permutation(pad + 1)[:pad].reshape(len(MODALITIES), 2)
    images = {}
    for m_i, m in enumerate(MODALITIES):
        val = scan.contrast[m]
        img = c1 * np.float32(val[_CSF])
        img += c2 * np.float32(val[_GM] - val[_CSF])
        img += c3 * np.float32(val[_WM] - val[_GM])
        img *= 1 + np.float32(0.04) * tex_b
        img[vessel_at] += vessel_frac * (np.float32(val[_VESSEL]) - img[vessel_at])
        img[lesion_at] = img[lesion_at] * lesion_rest + sum(f * np.float32(val[k]) for k, f in fractions.items())
        img *= _bias(scan.bias[m], where, fine_box, grid.shape)
        img *= np.float32(scan.gain[m])
        sigma = np.float32(noise * val[[_CSF, _GM, _WM]].mean())
        a, b = (pool[o:o + len(brain)] for o in offsets[m_i])
        img += sigma * a
        np.square(img, out=img)
        img += (sigma * b) ** 2      # magnitude of a complex signal: Rician
        np.sqrt(img, out=img)
        images[m] = img
    return images, brain


# --------------------------------------------------------------------------------------------------------------------
# Landmarks
# --------------------------------------------------------------------------------------------------------------------

_KIND_WEIGHT = {"bifurcation": 0.3, "cortex": 0.45, "midline": 0.25, "ventricle_horn": 0.0}


def _candidates(anat: _Anatomy, fields: dict[str, np.ndarray], grid: _Grid, rng) -> tuple[np.ndarray, list[str]]:
    """Anatomical points (3, n) mm in A and their kinds."""
    half = 0.5 * grid.node_spacing.max()
    f = fields
    deep_enough = f["depth"] > 4
    fundus = (np.abs(f["sulc"]) < half) & (np.abs(f["fundus"]) < half) & deep_enough
    crown = (np.abs(f["depth"] - 1.3) < half) & (np.abs(f["sulc"]) > 5) & (np.abs(f["mid"]) > 8)
    midline = (np.abs(f["mid"]) < half) & (f["midlimit"] > -half) & deep_enough & (f["vent"] > 3)
    pts, kinds = [anat.horn_tips.T, anat.bifurcations.T], ["ventricle_horn"] * len(anat.horn_tips)
    kinds += ["bifurcation"] * len(anat.bifurcations)
    for mask, kind in ((fundus | crown, "cortex"), (midline, "midline")):
        idx = np.flatnonzero(mask)
        idx = rng.permutation(idx)[:1500]
        where = np.unravel_index(idx, grid.node_shape)
        pts.append(np.stack([grid.node_axes[i][where[i]] for i in range(3)]))
        kinds += [kind] * len(idx)
    return np.hstack(pts), kinds


def _usable(a, p_b, p_f, tumour, grid, mass_b, warp_f, labels_b, labels_f):
    """Which candidates are usable landmarks, and which of those lie within 15 mm of the tumour's border.

    Usable: the inversion holds to 0.05 voxel in both scans, the point lies inside both volumes and their brains,
    outside tumour and cavity, and clear of the tumour's border by more than a voxel's reach."""
    ok = np.ones(a.shape[1], bool)
    for p, disp, labels in ((p_b, mass_b.displacement, labels_b), (p_f, warp_f.displacement, labels_f)):
        ok &= np.abs(p + disp(p) - a).max(0) / grid.voxel < 0.05
        vox = grid.mm_to_voxel(p.T)
        ok &= np.all((vox >= 1) & (vox <= np.array(grid.shape) - 2), axis=1)
        idx = np.clip(np.rint(vox).astype(int), 0, np.array(grid.shape) - 1)
        ok &= ~np.isin(labels[tuple(idx.T)], (LABELS["background"], LABELS["enhancing"], LABELS["necrosis"],
                                               LABELS["cavity"]))
    rel = p_b - tumour.centre[:, None]
    dist = np.sqrt((rel ** 2).sum(0))
    clearance = dist - tumour.boundary(rel / np.maximum(dist, 1e-6))
    margin = 3.0 + 0.87 * grid.voxel
    ok &= clearance > margin
    return ok, ok & (clearance < 15.0 + margin)


def _choose_landmarks(rng, settings, anat, tumour, grid, fields, mass_b, warp_f, labels_b, labels_f):
    """Landmarks (n, 3) voxel (x, y, z) in baseline and follow-up, and their kinds: a quarter near the tumour (the
    hard ones), some ventricle horns, the rest bifurcations, cortical and midline points by kind weights."""
    a, kinds = _candidates(anat, fields, grid, rng)
    p_b, p_f = mass_b.invert(a), warp_f.invert(a)
    ok, near = _usable(a, p_b, p_f, tumour, grid, mass_b, warp_f, labels_b, labels_f)
    kinds_arr = np.array(kinds)
    n = int(rng.integers(settings.landmarks_min, settings.landmarks_max + 1))
    chosen: list[int] = []
    for min_gap in (5.0, 2.0):
        _pick(rng, a, np.flatnonzero(near), max(1, round(0.25 * n)), chosen, min_gap)
        _pick(rng, a, np.flatnonzero(ok & (kinds_arr == "ventricle_horn")), min(6, max(1, n // 6)), chosen, min_gap)
        pool = np.flatnonzero(ok)
        # Weighted sampling without replacement, weights per kind, not per candidate (cortex has thousands).
        names, inverse, counts = np.unique(kinds_arr[pool], return_inverse=True, return_counts=True)
        weight = np.array([max(_KIND_WEIGHT[k], 1e-3) for k in names])[inverse] / counts[inverse]
        keys = rng.random(len(pool)) ** (1 / weight)
        _pick(rng, a, pool[np.argsort(-keys)], n - len(chosen), chosen, min_gap, shuffle=False)
        if len(chosen) >= settings.landmarks_min:
            break
    if len(chosen) < settings.landmarks_min:
        raise RuntimeError(f"brain phantom: only {len(chosen)} landmarks could be placed")
    sel = np.array(chosen)
    return _xyz(grid, p_b[:, sel]), _xyz(grid, p_f[:, sel]), [kinds[i] for i in sel]


def _xyz(grid: _Grid, pts_mm: np.ndarray) -> np.ndarray:
    """(3, n) mm (z, y, x) to (n, 3) voxel indices (x, y, z)."""
    return grid.mm_to_voxel(pts_mm.T)[:, ::-1].astype(np.float64)


def _pick(rng, pts, pool, k: int, chosen: list[int], min_gap: float, shuffle: bool = True) -> None:
    """Add up to ``k`` of ``pool`` to ``chosen``, each at least ``min_gap`` mm from those already there."""
    order = rng.permutation(pool) if shuffle else pool
    taken = 0
    for i in order:
        if taken >= k:
            break
        if i in chosen:
            continue
        if chosen and np.min(np.linalg.norm(pts[:, chosen] - pts[:, i, None], axis=0)) < min_gap:
            continue
        chosen.append(int(i))
        taken += 1


# --------------------------------------------------------------------------------------------------------------------
# The case
# --------------------------------------------------------------------------------------------------------------------

def _work_box(grid: _Grid, depth: np.ndarray, largest: float) -> tuple[slice, ...]:
    """Nodes that can see brain in either scan: the brain's bounding box, padded by the largest displacement."""
    where = np.nonzero(depth > -3.0)
    pad = np.ceil((largest + 4.0) / grid.node_spacing).astype(int)
    return tuple(slice(max(0, int(w.min()) - p), min(n, int(w.max()) + 1 + p))
                 for w, p, n in zip(where, pad, grid.node_shape))


# Fields that matter only near their structure, with where they do (in A, on the node grid).
_LOCAL_FIELDS = {
    "central": (("vent", "deep"), lambda f: np.minimum(f["vent"], f["deep"]) < 5),
    "midline": (("mid", "midlimit"), lambda f: (np.abs(f["mid"]) < 5) & (f["midlimit"] > -5) & (f["depth"] > -3)),
}


def _local_boxes(grid: _Grid, fields, node_box, pad_mm: float) -> dict[str, tuple[slice, ...]]:
    """Node boxes (inside ``node_box``) holding each local structure in either scan."""
    pad = np.ceil(pad_mm / grid.node_spacing).astype(int)
    boxes = {}
    for name, (_, relevant) in _LOCAL_FIELDS.items():
        where = np.nonzero(relevant(fields))
        boxes[name] = tuple(slice(max(b.start, int(w.min()) - p), min(b.stop, int(w.max()) + 1 + p))
                            for w, p, b in zip(where, pad, node_box))
    return boxes


def _warp_fields(grid, fields, names, nodes, disp, node_box):
    """A's fields ``names`` at x + d(x) for the nodes x of ``node_box`` (trilinear between A's nodes)."""
    cut = (slice(None),) + tuple(node_box)
    moved = nodes[cut] + disp[cut]
    coords = ((moved.reshape(3, -1).T - grid.node_origin) / grid.node_spacing).T.reshape(moved.shape)
    return {n: ndi.map_coordinates(fields[n], coords, order=1, mode="nearest", output=np.float32) for n in names}


def _warped_tissue(grid, anat, fields, nodes, disp, node_box, fine_box, local_boxes):
    """Tissue index, labels and texture of A(x + d(x)) on the voxels of ``fine_box``."""
    local_names = {n for names, _ in _LOCAL_FIELDS.values() for n in names}
    names = [n for n in fields if n not in local_names]
    fine = {n: grid.to_voxels(v, node_box, fine_box)
            for n, v in _warp_fields(grid, fields, names, nodes, disp, node_box).items()}
    local = {}
    for group, (names, _) in _LOCAL_FIELDS.items():
        box = local_boxes[group]
        voxels = grid.voxel_box(box)
        warped = _warp_fields(grid, fields, names, nodes, disp, box)
        sub = {n: grid.to_voxels(v, box, voxels) for n, v in warped.items()}
        local[group] = (tuple(slice(v.start - f.start, v.stop - f.start) for v, f in zip(voxels, fine_box)), sub)
    t, labels = _tissue(fine, local, anat, grid.voxel)
    return t, labels, fine["tex"]


def _vessels_in(points_mm: np.ndarray, radii, grid, fine_box, labels) -> np.ndarray:
    vessel = _splat_vessels(grid.mm_to_voxel(points_mm.T), radii, grid.voxel, fine_box)
    vessel *= labels > 0
    labels[vessel > 0.5] = LABELS["vessel"]
    return vessel


def _scan(rng, scan, t, labels, vessel, layer, tex, fine_box, grid, noise):
    vessel[layer.box] *= 1 - layer.total()          # the lesion hides the vessels it covers
    images, brain = _render(rng, scan, t, labels, vessel, layer, tex, fine_box, grid, noise)
    where = np.unravel_index(brain, t.shape)
    flat = np.ravel_multi_index(tuple(w + s.start for w, s in zip(where, fine_box)), grid.shape)
    full = {}
    for m, img in images.items():
        out = np.zeros(grid.shape, np.float32)
        out.reshape(-1)[flat] = img
        full[m] = out
    lab = np.zeros(grid.shape, np.uint8)
    lab[fine_box] = labels
    return full, lab


def make_pair(seed: int | np.random.Generator, settings: PhantomSettings = PhantomSettings()) -> BrainPair:
    """One synthetic case (baseline, follow-up, landmarks, labels, true follow-up -> baseline field)."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    grid = _Grid(settings.shape, settings.voxel_mm)
    anat = _draw_anatomy(rng)
    tumour = _draw_tumour(rng, anat, settings)
    mass_b = _MassEffect(tumour.centre, tumour.radius, settings.mass_effect_mm, anat.centre, anat.semi * 0.92,
                         1.5 * tumour.radius + 20.0)
    nodes = grid.node_points()
    warp_f, d_f = _followup_warp(rng, anat, replace(mass_b, scale=settings.relaxation), settings, grid, nodes)
    scan_b, scan_f = _draw_scans(rng)

    fields = _anatomy_fields(anat, grid)
    d_b = mass_b.displacement(nodes)
    field_nodes = (mass_b.invert(nodes + d_f) - nodes) / grid.voxel
    full = tuple(slice(0, n) for n in grid.node_shape)
    voxels = tuple(slice(0, n) for n in grid.shape)
    field = np.stack([grid.to_voxels(field_nodes[i], full, voxels) for i in (2, 1, 0)]).astype(np.float32)
    del field_nodes

    largest = max(float(np.sqrt((d ** 2).sum(0)).max()) for d in (d_b, d_f))
    node_box = _work_box(grid, fields["depth"], largest)
    fine_box = grid.voxel_box(node_box)
    local_boxes = _local_boxes(grid, fields, node_box, largest + 4.0)
    t_b, lab_b, tex_b = _warped_tissue(grid, anat, fields, nodes, d_b, node_box, fine_box, local_boxes)
    ves_b = _vessels_in(mass_b.invert(anat.vessel_points.T), anat.vessel_radii, grid, fine_box, lab_b)
    layer_b = _baseline_lesion(grid, tumour, t_b, lab_b, fine_box)
    t_f, lab_f, tex_f = _warped_tissue(grid, anat, fields, nodes, d_f, node_box, fine_box, local_boxes)
    ves_f = _vessels_in(warp_f.invert(anat.vessel_points.T), anat.vessel_radii, grid, fine_box, lab_f)
    layer_f = _followup_lesion(grid, tumour, t_f, lab_f, fine_box, field)
    del d_b, d_f, nodes

    baseline, labels_b = _scan(rng, scan_b, t_b, lab_b, ves_b, layer_b, tex_b, fine_box, grid, settings.noise)
    followup, labels_f = _scan(rng, scan_f, t_f, lab_f, ves_f, layer_f, tex_f, fine_box, grid, settings.noise)
    lm_b, lm_f, kinds = _choose_landmarks(rng, settings, anat, tumour, grid, fields, mass_b, warp_f, labels_b,
                                          labels_f)
    return BrainPair(baseline, followup, lm_b, lm_f, kinds, labels_b, labels_f, field)
