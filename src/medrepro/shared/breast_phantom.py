"""A seeded synthetic 3-D breast and its two mammographic views (CC and MLO).

The breast is one compressible 3-D model, so the CC and MLO views of a lesion
are tied by geometry, not by an affine map:

* **Frame** (mm, uncompressed): ``x`` from the chest wall (0) to the nipple
  (``depth_mm``), ``y`` cranial, ``z`` lateral. The envelope is
  ``(x / depth)^profile + (y / radius_y)^2 + (z / radius_z)^2 <= 1`` (``profile``
  1 a paraboloid, 2 a half-ellipsoid) in front of the chest
  wall, continued behind it by an elliptic cylinder (the breast base, ``back_mm``
  deep) and capped by a small nipple sphere. Skin is a layer of ``skin_mm`` under
  the envelope; fat fills the rest; fibroglandular tissue is a smooth random
  texture (its volume fraction set by ``density``, 0 fatty .. 1 dense) held on a
  coarse voxel grid (``voxel_mm``); ducts (converging to the nipple) and vessels
  are 3-D polylines. The pectoral muscle lies behind the breast, its front face
  a plane rising towards the axilla.
* **Views**: a view rotates the frame about ``x`` by its angle (CC 0 degrees,
  MLO 45-50), so that ``w`` (the compression axis) is ``cos a * y - sin a * z``
  and ``v`` (the image's vertical, superolateral up) is ``sin a * y + cos a * z``.
  Compression flattens each column of tissue to at most ``thickness / 2`` either
  side of its mid-line and spreads the tissue in the image plane by the running
  integral of the columns' compression ratio (column half-thickness over
  ``thickness / 2``, at least 1) raised to an exponent: along x from the chest
  wall, along v from the breast axis (see ``_Compression``). Thick columns (at the
  chest wall, on the axis) spread most, the thin ones at the nipple and the
  skin line not at all; away from the mid-plane the x spread shrinks by
  ``1 - bulge * tau ** 2`` (``tau`` the relative depth in the column: tissue held
  by the paddles spreads less). The MLO also lifts the mobile front of the
  breast along v, the chest wall and muscle staying put. ``spread=0, bulge=0``
  makes the compression linear, which maps every 3-D point affinely into the
  image: the control for the non-affinity.
* **Projection**: the line integral of attenuation (1/mm) through the
  compressed breast: fat, skin and muscle analytically per pixel, the
  glandular texture sampled from the voxel grid, ducts, vessels, masses and
  calcifications analytically at sub-pixel precision, then the film's
  characteristic curve (exposure set from the breast's own attenuation, as an
  automatic exposure control does) gives a density in 0..1, air dark, dense
  tissue bright.
* **Image layout**: a right breast has its chest wall at the right image edge
  and the nipple pointing left; a left breast is mirrored (chest wall on the
  left). ``v`` points up: lateral in the CC, superolateral (the axilla, where
  the MLO's pectoral triangle sits) in the MLO.

Everything random comes from the ``numpy.random.Generator`` passed in: the same
seed gives the same arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage as ndi

from medrepro.errors import ConfigError

__all__ = [
    "Lesion", "Curve", "Breast", "FilmEffects", "ProjectedView",
    "make_breast", "project_cc", "project_mlo", "single_calcification",
    "breast_pixel_mm", "breast_extent_mm", "map_points", "render_spheres", "DEFAULT_SHAPE",
]

DEFAULT_SHAPE = (600, 360)  # rows, cols: longest side 600 px, the aspect of a digitised 18 x 24 cm film

# Linear attenuation at about 20 keV, per mm (Johns & Yaffe 1987, rounded).
MU_FAT = 0.045
MU_GLAND = 0.080
MU_SKIN = 0.080
MU_MUSCLE = 0.095
MU_MASS = 0.088
MU_CALCIFICATION = 1.2

CC_BACK_MM = 3.0        # the CC field begins just behind the chest wall line
PSF_SIGMA_MM = 0.08     # screen-film and digitiser blur
MLO_AXIS_ROW = 0.55     # the MLO's breast axis lies a little below the image centre, leaving the axilla above


# --------------------------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------------------------

@dataclass
class Lesion:
    """One abnormality at a 3-D position (mm, breast frame).

    ``kind`` is ``mass`` or ``calcification``; ``form`` is ``round`` or
    ``spiculated`` (masses), ``cluster``, ``single`` or ``vascular``
    (calcifications). ``extent_mm`` is the half-size of its axis-aligned 3-D
    bounding box. Masses carry an ellipsoidal core (``semi_axes_mm`` along the
    columns of ``rotation``) and, when spiculated, ``spicules`` (k, 2, 3): start
    and end of each. Calcifications carry ``particles`` (n, 4): x, y, z and
    diameter (mm) of each rigid sphere.
    """

    id: int
    kind: str
    form: str
    centre_mm: np.ndarray
    extent_mm: np.ndarray
    semi_axes_mm: np.ndarray | None = None
    rotation: np.ndarray | None = None
    spicules: np.ndarray | None = None
    particles: np.ndarray | None = None


@dataclass
class Curve:
    """A linear structure: a 3-D polyline (n, 3) in mm with a tube radius and an attenuation above fat."""

    points: np.ndarray
    radius_mm: float
    excess_mu: float


@dataclass
class Breast:
    """The 3-D breast: envelope, tissue, compression behaviour and lesions (see the module docstring)."""

    laterality: str
    depth_mm: float
    radius_y_mm: float
    radius_z_mm: float
    profile: float
    back_mm: float
    skin_mm: float
    nipple_radius_mm: float
    density: float
    thickness_mm: float
    spread_x: float
    spread_v: float
    bulge: float
    mlo_lift_mm: float
    muscle_offset: float
    muscle_slope: float
    voxel_mm: float
    origin_mm: np.ndarray
    gland_excess: np.ndarray
    ducts: list[Curve] = field(default_factory=list)
    vessels: list[Curve] = field(default_factory=list)
    lesions: list[Lesion] = field(default_factory=list)

    @property
    def nipple_centre_mm(self) -> np.ndarray:
        return np.array([self.depth_mm + 0.3 * self.nipple_radius_mm, 0.0, 0.0])


@dataclass(frozen=True)
class FilmEffects:
    """Digitised-film post-processing: grain noise (sd in density units), a scanner border strip, a label patch."""

    noise_sd: float = 0.012
    border: bool = True
    label: bool = True


@dataclass
class ProjectedView:
    """One mammogram of a breast.

    ``image`` float32 (rows, cols) film density in 0..1; ``breast_mask`` the
    compressed breast's footprint (skin and nipple included, pectoral muscle not);
    ``muscle_mask`` the pectoral muscle; ``lesion_masks`` {lesion id: bool mask of
    the lesion's projected 3-D extent}; ``calcification_masks`` {lesion id: bool
    mask of its calcifications' own pixels} for calcification lesions;
    ``lesion_centres_px`` {lesion id: (row, col)} of the projected 3-D centre
    (sub-pixel; pixel centres at integers); ``params`` what the view used.
    """

    image: np.ndarray
    breast_mask: np.ndarray
    muscle_mask: np.ndarray
    lesion_masks: dict[int, np.ndarray]
    calcification_masks: dict[int, np.ndarray]
    lesion_centres_px: dict[int, tuple[float, float]]
    params: dict


# --------------------------------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------------------------------

def _check_range(name: str, value: float, low: float, high: float) -> float:
    if not (np.isfinite(value) and low <= value <= high):
        raise ConfigError(f"breast phantom: {name}={value!r} is out of range; use a value in [{low}, {high}]")
    return float(value)


def _check_count(name: str, value: int) -> int:
    if int(value) != value or not 0 <= value <= 200:
        raise ConfigError(f"breast phantom: {name}={value!r} is not a count; use an integer in [0, 200]")
    return int(value)


def _check_shape(shape) -> tuple[int, int]:
    if len(shape) != 2 or min(int(s) for s in shape) < 32 or max(int(s) for s in shape) > 20000:
        raise ConfigError(f"breast phantom: image shape {tuple(shape)!r} is invalid; "
                          "use (rows, cols), 32 to 20000 each")
    return int(shape[0]), int(shape[1])


# --------------------------------------------------------------------------------------------------------------------
# Envelope geometry (vectorised over arrays of points)
# --------------------------------------------------------------------------------------------------------------------

def _cross_section_scale(breast: Breast, x: np.ndarray, shrink: float = 0.0) -> np.ndarray:
    """s(x): the envelope's cross-section at ``x`` is the ellipse (y/a)^2 + (z/b)^2 <= s^2 (0 beyond the apex)."""
    depth = breast.depth_mm - shrink
    ratio2 = (np.clip(x, 0.0, None) / depth) ** breast.profile + _base_taper(x, breast.back_mm)
    return np.sqrt(np.clip(1.0 - ratio2, 0.0, None)) * (x >= -breast.back_mm)


def _base_taper(x, back_mm: float):
    """Behind the chest wall line the cross-section narrows gently (the inframammary fold, the axilla's edge)."""
    return (np.clip(x, None, 0.0) / (2.5 * back_mm)) ** 2


def _view_axes(angle_deg: float) -> tuple[float, float]:
    a = math.radians(angle_deg)
    return math.sin(a), math.cos(a)


def _to_view(points: np.ndarray, angle_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, v, w) of breast-frame points: v the image's vertical, w the compression axis."""
    s, c = _view_axes(angle_deg)
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return x, s * y + c * z, c * y - s * z


def _from_view(x, v, w, angle_deg: float) -> np.ndarray:
    s, c = _view_axes(angle_deg)
    return np.stack([x, s * v + c * w, c * v - s * w], axis=-1)


def _column(breast: Breast, x, v, angle_deg: float, shrink: float = 0.0):
    """Mid-line w_c and half-length h of the envelope's column through (x, v) along w (h = 0 outside).

    The ellipse (y/a)^2 + (z/b)^2 <= s^2 in the rotated (v, w) coordinates reads
    A_ww w^2 + 2 A_vw v w + A_vv v^2 <= s^2; its chord at fixed v is centred at
    -A_vw v / A_ww with half-length sqrt(s^2 - v^2 / (a b)^2 / A_ww) / sqrt(A_ww).
    """
    a, b = breast.radius_y_mm - shrink, breast.radius_z_mm - shrink
    sn, cs = _view_axes(angle_deg)
    a_ww = cs ** 2 / a ** 2 + sn ** 2 / b ** 2
    a_vw = sn * cs * (1 / a ** 2 - 1 / b ** 2)
    s = _cross_section_scale(breast, x, shrink)
    centre = -a_vw * v / a_ww
    half = np.sqrt(np.clip(s ** 2 - v ** 2 / (a * b) ** 2 / a_ww, 0.0, None) / a_ww)
    nipple = _nipple_half_chord(breast, x, v, angle_deg, shrink)
    return centre, np.maximum(half, nipple)


def _nipple_half_chord(breast: Breast, x, v, angle_deg: float, shrink: float = 0.0):
    radius = breast.nipple_radius_mm - shrink
    centre = breast.nipple_centre_mm
    _, cv, _ = _to_view(centre, angle_deg)
    rho2 = (x - centre[0]) ** 2 + (v - cv) ** 2
    return np.sqrt(np.clip(radius ** 2 - rho2, 0.0, None))


def _axis_half_thickness(breast: Breast, angle_deg: float) -> float:
    """The envelope's half-thickness along w on the breast axis at the chest wall."""
    sn, cs = _view_axes(angle_deg)
    return 1.0 / math.sqrt(cs ** 2 / breast.radius_y_mm ** 2 + sn ** 2 / breast.radius_z_mm ** 2)


def _half_width_v(breast: Breast, angle_deg: float) -> float:
    """The envelope's half-extent along v at the chest wall."""
    sn, cs = _view_axes(angle_deg)
    a, b = breast.radius_y_mm, breast.radius_z_mm
    return a * b * math.sqrt(cs ** 2 / a ** 2 + sn ** 2 / b ** 2)


# --------------------------------------------------------------------------------------------------------------------
# Compression: forward (points) and inverse (pixels) maps, both closed form
# --------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Compression:
    """One view's compression: the x spread F(x), the v spread V(x, v), the bulge and the paddle half-gap.

    Tissue squeezed out of a column moves sideways: each compressed column of
    width dx' dv' holds the tissue of an uncompressed one of width dx dv, so the
    spread along a direction is the running integral of the columns'
    compression ratio c = h / (thickness / 2) (at least 1: thin columns are not
    touched) raised to an exponent (the share of the spread in that direction).
    Along x it is integrated on the breast axis from the chest wall: F(x) =
    int_0^x c_axis^spread_x. Along v it is integrated across the cross-section
    from the axis: with the column profile c = C(x) sqrt(1 - rho^2), rho =
    v / r_v(x), V = r_v(x) Phi(C(x), rho) and Phi(C, rho) = int_0^rho max(C
    sqrt(1 - r^2), 1)^spread_v dr, tabulated with its inverse. The bulge scales
    the x displacement by 1 - bulge tau^2. In the MLO the breast is also lifted
    along v before compression: P(x) = lift (1 - exp(-x / (0.25 depth))), nothing
    at the chest wall (tethered, as is the muscle), the full lift for the mobile
    front of the breast.
    """

    angle_deg: float
    half_gap: float
    bulge: float
    x_table: np.ndarray
    f_minus_x: np.ndarray      # F(x) - x, the x displacement of the mid-plane
    c_axis: np.ndarray         # C(x): the axis column's compression ratio (unclamped) on x_table
    r_v: np.ndarray            # r_v(x): the cross-section's half-width along v on x_table
    c_grid: np.ndarray
    rho_grid: np.ndarray
    phi: np.ndarray            # Phi(c_grid[i], rho_grid[j])
    phi_grid: np.ndarray
    psi: np.ndarray            # rho with Phi(c_grid[i], rho) = phi_grid[j]
    lift: np.ndarray           # P(x): the MLO's lift along v on x_table (0 in the CC)

    def x_shift(self, x, tau):
        return (1.0 - self.bulge * tau ** 2) * np.interp(x, self.x_table, self.f_minus_x)

    def invert_x(self, x_compressed, weight: float):
        """x with x + weight * (F(x) - x) = x_compressed: monotone, so a table look-up."""
        return np.interp(x_compressed, self.x_table + weight * self.f_minus_x, self.x_table)

    def _table(self, table, grid, c, value):
        ci = np.interp(c, self.c_grid, np.arange(len(self.c_grid)))
        vi = np.broadcast_to(np.interp(value, grid, np.arange(len(grid))), np.shape(ci))
        return ndi.map_coordinates(table, [np.ravel(ci), np.ravel(vi)], order=1, mode="nearest").reshape(np.shape(ci))

    def _profile(self, x):
        return np.interp(x, self.x_table, self.c_axis), np.interp(x, self.x_table, self.r_v)

    def _edge(self, c):
        """Phi(C, 1): where the cross-section's edge lands."""
        return np.interp(c, self.c_grid, self.phi[:, -1])

    def v_forward(self, x, v):
        c, r_v = self._profile(x)
        safe = np.maximum(r_v, 1e-6)
        rho = np.abs(v) / safe
        edge = self._edge(c)
        inside = self._table(self.phi, self.rho_grid, c, np.minimum(rho, 1.0))
        phi = np.where(rho <= 1.0, inside, edge + rho - 1.0)
        lift = np.interp(x, self.x_table, self.lift)
        return np.where(r_v > 1e-6, np.sign(v) * safe * phi, v) + lift

    def v_inverse(self, x, vc):
        c, r_v = self._profile(x)
        vc = vc - np.interp(x, self.x_table, self.lift)
        safe = np.maximum(r_v, 1e-6)
        phi = np.abs(vc) / safe
        edge = self._edge(c)
        inside = self._table(self.psi, self.phi_grid, c, np.minimum(phi, edge))
        rho = np.where(phi <= edge, inside, 1.0 + phi - edge)
        return np.where(r_v > 1e-6, np.sign(vc) * safe * rho, vc)


def _compression(breast: Breast, angle_deg: float, thickness_mm: float) -> _Compression:
    half_gap = thickness_mm / 2.0
    step = min(0.25, breast.voxel_mm / 4)
    x_table = np.arange(-breast.back_mm - 1.0, breast.depth_mm + 2 * breast.nipple_radius_mm + 2.0, step)
    scale = _cross_section_scale(breast, x_table)
    c_axis = _axis_half_thickness(breast, angle_deg) * scale / half_gap
    ex = np.maximum(c_axis, 1.0) ** breast.spread_x
    ex[x_table < 0] = 1.0               # the chest wall holds the tissue behind it
    f = np.concatenate([[0.0], np.cumsum(0.5 * (ex[1:] + ex[:-1]) * np.diff(x_table))])
    f -= np.interp(0.0, x_table, f)     # F(0) = 0
    f_minus_x = np.where(x_table < 0, 0.0, f - x_table)
    c_grid = np.linspace(0.0, max(float(c_axis.max()), 1.0) + 1e-6, 48)
    rho_grid = np.linspace(0.0, 1.0, 513)
    slope = np.maximum(c_grid[:, None] * np.sqrt(1.0 - rho_grid[None, :] ** 2), 1.0) ** breast.spread_v
    phi = np.concatenate([np.zeros((len(c_grid), 1)),
                          np.cumsum(0.5 * (slope[:, 1:] + slope[:, :-1]) * np.diff(rho_grid), axis=1)], axis=1)
    phi_grid = np.linspace(0.0, float(phi[:, -1].max()), 1025)
    psi = np.stack([np.interp(phi_grid, row, rho_grid) for row in phi])
    lift = 0.0 if angle_deg == 0.0 else breast.mlo_lift_mm
    lift_table = lift * (1.0 - np.exp(-np.clip(x_table, 0.0, None) / (0.25 * breast.depth_mm)))
    return _Compression(angle_deg, half_gap, breast.bulge, x_table, f_minus_x, c_axis,
                        scale * _half_width_v(breast, angle_deg), c_grid, rho_grid, phi, phi_grid, psi, lift_table)


def _compress_points(breast: Breast, comp: _Compression, points: np.ndarray) -> np.ndarray:
    """Breast-frame points (n, 3) -> compressed view coordinates (n, 3): x', v', w' (mm)."""
    x, v, w = _to_view(np.asarray(points, float), comp.angle_deg)
    centre, half = _column(breast, x, v, comp.angle_deg)
    half = np.maximum(half, 1e-6)
    tau = np.clip((w - centre) / half, -1.0, 1.0)
    return np.stack([x + comp.x_shift(x, tau), comp.v_forward(x, v), tau * np.minimum(half, comp.half_gap)], axis=-1)


def _uncompress(breast: Breast, comp: _Compression, xc, vc, tau: float):
    """Pixel positions (x', v') at relative depth tau -> breast-frame (x, v, w), column half-length and its gap."""
    x = comp.invert_x(xc, 1.0 - comp.bulge * tau ** 2)
    v = comp.v_inverse(x, vc)
    centre, half = _column(breast, x, v, comp.angle_deg)
    return x, v, centre + tau * half, half


# --------------------------------------------------------------------------------------------------------------------
# Building the breast
# --------------------------------------------------------------------------------------------------------------------

def _voxel_grid(breast_dims: dict, voxel_mm: float):
    depth, a, b, back, nipple = (breast_dims[k] for k in ("depth", "a", "b", "back", "nipple"))
    origin = np.array([-back - voxel_mm, -a - voxel_mm, -b - voxel_mm])
    top = np.array([depth + 2 * nipple + voxel_mm, a + voxel_mm, b + voxel_mm])
    shape = tuple(int(n) for n in np.ceil((top - origin) / voxel_mm) + 1)
    axes = [origin[i] + voxel_mm * np.arange(shape[i]) for i in range(3)]
    return origin, shape, np.ix_(*axes)


def _smooth_noise(rng: np.random.Generator, shape, sigma_vox: float) -> np.ndarray:
    noise = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox, mode="wrap")
    return noise / max(float(noise.std()), 1e-6)


def _gland_excess(rng, dims: dict, density: float, voxel_mm: float):
    """Fibroglandular tissue as attenuation above fat on the voxel grid: smooth random texture, central, not
    subcutaneous."""
    origin, shape, (x, y, z) = _voxel_grid(dims, voxel_mm)
    depth, a, b = dims["depth"], dims["a"], dims["b"]
    q = np.sqrt((np.clip(x, 0, None) / depth) ** dims["profile"] + _base_taper(x, dims["back"]) + (y / a) ** 2
                + (z / b) ** 2)
    inside = (q < 1.0) & (x >= -dims["back"])
    to_skin = (1.0 - q) * min(a, b, depth)
    radial = (y / a) ** 2 + (z / b) ** 2
    bias = -1.2 * radial - 2.5 * np.exp(-np.clip(to_skin, 0, None) / 6.0) + 0.4 * (y / a + z / b) / math.sqrt(2)
    bias = bias - 0.8 * np.clip(-x / dims["back"], 0.0, 1.0)
    texture = 0.75 * _smooth_noise(rng, shape, 7.0 / voxel_mm) + 0.45 * _smooth_noise(rng, shape, 2.5 / voxel_mm)
    field_ = texture + bias
    fraction = 0.05 + 0.5 * density
    threshold = np.quantile(field_[inside], 1.0 - fraction)
    gland = 1.0 / (1.0 + np.exp(-(field_ - threshold) / 0.2))
    return origin, (gland * inside * (MU_GLAND - MU_FAT)).astype(np.float32)


def _inside_envelope(breast_dims: dict, points: np.ndarray, margin: float) -> np.ndarray:
    depth, a, b = breast_dims["depth"] - margin, breast_dims["a"] - margin, breast_dims["b"] - margin
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    taper = _base_taper(x, breast_dims["back"])
    return (np.clip(x, 0, None) / depth) ** breast_dims["profile"] + taper + (y / a) ** 2 + (z / b) ** 2 < 1.0


def _dimensions(breast: Breast) -> dict:
    """The envelope's sizes as the builders use them."""
    return {"depth": breast.depth_mm, "a": breast.radius_y_mm, "b": breast.radius_z_mm, "back": breast.back_mm,
            "nipple": breast.nipple_radius_mm, "profile": breast.profile}


def _random_interior_point(rng, dims: dict, margin: float, x_range: tuple[float, float]) -> np.ndarray:
    """A uniform point inside the envelope shrunk by ``margin`` with x in the given fraction of the depth."""
    low, high = x_range[0] * dims["depth"], x_range[1] * dims["depth"]
    for _ in range(1000):
        p = np.array([rng.uniform(low, high), rng.uniform(-dims["a"], dims["a"]), rng.uniform(-dims["b"], dims["b"])])
        if _inside_envelope(dims, p, margin):
            return p
    raise ConfigError(f"breast phantom: no room for a structure {margin:.1f} mm from the skin; use a larger breast "
                      "or smaller lesions")


def _smooth_path(rng, start, end, wiggle_mm: float, step_mm: float = 1.0) -> np.ndarray:
    """A curved polyline from start to end: a quadratic Bezier bent sideways plus a gentle meander."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    length = float(np.linalg.norm(end - start))
    n = max(int(length / step_mm), 2) + 1
    t = np.linspace(0, 1, n)[:, None]
    bend = (start + end) / 2 + rng.normal(0, 0.15 * length + 1e-9, 3)
    path = (1 - t) ** 2 * start + 2 * t * (1 - t) * bend + t ** 2 * end
    phase, freq = rng.uniform(0, 2 * np.pi, 3), rng.uniform(1.5, 4.0, 3)
    return path + wiggle_mm * np.sin(2 * np.pi * freq * t + phase) * np.sin(np.pi * t)


def _linear_structures(rng, dims: dict, density: float, nipple: np.ndarray):
    """Ducts converging to the nipple (with side branches) and tortuous vessels, kept inside the envelope."""
    ducts = []
    for _ in range(int(round(8 + 14 * density))):
        start = _random_interior_point(rng, dims, 8.0, (0.05, 0.6))
        trunk = _smooth_path(rng, start, nipple - [2.0, 0, 0], wiggle_mm=1.5)
        ducts.append(Curve(trunk, rng.uniform(0.35, 0.7), MU_GLAND - MU_FAT))
        for _ in range(rng.integers(0, 3)):
            fork = trunk[rng.integers(0, max(len(trunk) // 2, 1))]
            tip = fork + rng.normal(0, 12.0, 3) - [8.0, 0, 0]
            ducts.append(Curve(_smooth_path(rng, fork, tip, wiggle_mm=1.0), rng.uniform(0.25, 0.45),
                               MU_GLAND - MU_FAT))
    vessels = []
    for _ in range(int(rng.integers(4, 8))):
        start = _random_interior_point(rng, dims, 6.0, (0.0, 0.1))
        end = _random_interior_point(rng, dims, 6.0, (0.5, 0.9))
        vessels.append(Curve(_smooth_path(rng, start, end, wiggle_mm=rng.uniform(3, 6)), rng.uniform(0.6, 1.1),
                             MU_GLAND + 0.005 - MU_FAT))
    keep = lambda c: replace(c, points=c.points[_inside_envelope(dims, c.points, 2.0)])  # noqa: E731
    return [keep(c) for c in ducts], [keep(c) for c in vessels]


def _random_rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


def _mass(rng, lesion_id: int, dims: dict, form: str, skin: float) -> Lesion:
    diameter = rng.uniform(5.0, 20.0)
    semi = diameter / 2 * np.array([1.0, rng.uniform(0.7, 1.0), rng.uniform(0.6, 1.0)])
    if form == "spiculated":
        semi = semi * 0.6
    rotation = _random_rotation(rng)
    spicules = None
    reach = semi.max()
    if form == "spiculated":
        n = int(rng.integers(8, 20))
        directions = rng.standard_normal((n, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        metric = rotation @ np.diag(semi ** -2.0) @ rotation.T
        surface = 1.0 / np.sqrt(np.einsum("ni,ij,nj->n", directions, metric, directions))
        lengths = rng.uniform(0.6, 1.3, n) * semi.mean()
        spicules = np.stack([0.8 * surface[:, None] * directions, (surface + lengths)[:, None] * directions], axis=1)
        reach = float(np.linalg.norm(spicules[:, 1], axis=1).max())
    centre = _random_interior_point(rng, dims, reach + skin + 4.0, (0.15, 0.85))
    centre[0] = max(centre[0], reach + 5.0)
    if spicules is not None:
        spicules = spicules + centre
    return Lesion(lesion_id, "mass", form, centre, np.full(3, reach), semi, rotation, spicules)


def _calcification_lesion(lesion_id: int, form: str, particles: np.ndarray, margin: float = 0.5) -> Lesion:
    centre = particles[:, :3].mean(axis=0)
    reach = np.abs(particles[:, :3] - centre) + particles[:, 3:4] / 2
    return Lesion(lesion_id, "calcification", form, centre, reach.max(axis=0) + margin, particles=particles)


def single_calcification(lesion_id: int, centre_mm, diameter_mm: float) -> Lesion:
    """One calcification: a rigid sphere of the given diameter (mm) at a breast-frame position (mm)."""
    _check_range("calcification diameter_mm", diameter_mm, 0.05, 3.0)
    particle = np.array([[*np.asarray(centre_mm, float), diameter_mm]])
    return _calcification_lesion(lesion_id, "single", particle, margin=0.0)


def _calcification_diameters(rng, n: int) -> np.ndarray:
    return np.clip(rng.lognormal(math.log(0.3), 0.5, n), 0.1, 1.0)


def _cluster(rng, lesion_id: int, dims: dict, skin: float) -> Lesion:
    radius = rng.uniform(2.0, 8.0)
    centre = _random_interior_point(rng, dims, radius + skin + 4.0, (0.15, 0.85))
    centre[0] = max(centre[0], radius + 5.0)
    n = int(rng.integers(5, 31))
    offsets = rng.standard_normal((n, 3))
    offsets *= (radius * rng.uniform(0, 1, n) ** (1 / 3) / np.linalg.norm(offsets, axis=1))[:, None]
    particles = np.column_stack([centre + offsets, _calcification_diameters(rng, n)])
    return _calcification_lesion(lesion_id, "cluster", particles)


def _single(rng, lesion_id: int, dims: dict, skin: float) -> Lesion:
    centre = _random_interior_point(rng, dims, skin + 5.0, (0.15, 0.85))
    centre[0] = max(centre[0], 6.0)
    return single_calcification(lesion_id, centre, float(rng.uniform(0.1, 1.0)))


def _vascular(rng, lesion_id: int, vessel: Curve) -> Lesion:
    """Paired calcifications on both walls of a vessel stretch ("tram tracks")."""
    points = vessel.points[vessel.points[:, 0] > 6.0]
    if len(points) < 4:
        points = vessel.points
    length = min(len(points), int(rng.integers(12, 26)))
    first = int(rng.integers(0, len(points) - length + 1))
    track = points[first:first + length]
    tangent = np.gradient(track, axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
    side = np.cross(tangent, rng.standard_normal(3))
    side /= np.maximum(np.linalg.norm(side, axis=1, keepdims=True), 1e-9)
    walls = np.concatenate([track + vessel.radius_mm * side, track - vessel.radius_mm * side])
    keep = rng.uniform(size=len(walls)) > 0.3
    keep[0] = True
    walls = walls[keep]
    particles = np.column_stack([walls, rng.uniform(0.2, 0.6, len(walls))])
    return _calcification_lesion(lesion_id, "vascular", particles)


def make_breast(rng: np.random.Generator, *, laterality: str | None = None, density: float | None = None,
                depth_mm: float | None = None, radius_y_mm: float | None = None, radius_z_mm: float | None = None,
                thickness_mm: float | None = None, spread: float = 1.0, bulge: float | None = None,
                voxel_mm: float = 2.0, n_masses: int = 1, n_clusters: int = 1, n_single: int = 1,
                n_vascular: int = 1, spiculated_fraction: float = 0.5,
                lesions: list[Lesion] | None = None) -> Breast:
    """A random breast; every unset parameter is drawn from ``rng`` (all draws happen whatever is set, in one order).

    ``density`` 0 (fatty) .. 1 (dense); sizes in mm (depth chest wall -> nipple
    50-110, radii 50-85); ``thickness_mm`` the compressed thickness of the CC
    (30-75; the MLO's is 0-15 % more); ``spread`` scales the in-plane spreading of
    compression (0: linear compression, the affine control; 1: the default
    model); ``bulge`` 0..0.9 how much less the tissue at the paddles spreads;
    ``voxel_mm`` the glandular texture's grid (finer is slower: 2 mm takes a
    fraction of a second, 1 mm several times more). Lesions: ``n_masses``
    (round or spiculated, ``spiculated_fraction``), ``n_clusters`` (calcification
    clusters), ``n_single`` (single calcifications), ``n_vascular`` (vascular
    calcifications along a vessel), or ``lesions`` given explicitly (their ids
    kept) instead of random ones.
    """
    draws = {
        "laterality": "R" if rng.uniform() < 0.5 else "L",
        "density": float(rng.beta(2.0, 2.5)),
        "depth": rng.uniform(60.0, 100.0), "a": rng.uniform(55.0, 80.0), "b": rng.uniform(55.0, 80.0),
        "thickness": rng.uniform(40.0, 65.0), "bulge": rng.uniform(0.2, 0.5),
        "back": rng.uniform(25.0, 40.0), "skin": rng.uniform(1.2, 2.0), "nipple": rng.uniform(4.0, 6.0),
        "lift": rng.uniform(8.0, 20.0), "profile": rng.uniform(1.0, 1.6),
        "muscle_offset": rng.uniform(-0.3, 0.2), "muscle_slope": rng.uniform(0.45, 0.8),
    }
    laterality = draws["laterality"] if laterality is None else laterality
    if laterality not in ("R", "L"):
        raise ConfigError(f"breast phantom: laterality={laterality!r} is invalid; use 'R' or 'L'")
    dims = {
        "depth": _check_range("depth_mm", draws["depth"] if depth_mm is None else depth_mm, 30.0, 150.0),
        "a": _check_range("radius_y_mm", draws["a"] if radius_y_mm is None else radius_y_mm, 30.0, 120.0),
        "b": _check_range("radius_z_mm", draws["b"] if radius_z_mm is None else radius_z_mm, 30.0, 120.0),
        "back": draws["back"], "nipple": draws["nipple"], "profile": draws["profile"],
    }
    density = _check_range("density", draws["density"] if density is None else density, 0.0, 1.0)
    thickness = _check_range("thickness_mm", draws["thickness"] if thickness_mm is None else thickness_mm, 20.0, 90.0)
    bulge = _check_range("bulge", draws["bulge"] if bulge is None else bulge, 0.0, 0.9)
    spread = _check_range("spread", spread, 0.0, 2.0)
    voxel_mm = _check_range("voxel_mm", voxel_mm, 0.25, 5.0)
    _check_range("spiculated_fraction", spiculated_fraction, 0.0, 1.0)
    counts = [_check_count(n, v) for n, v in
              (("n_masses", n_masses), ("n_clusters", n_clusters), ("n_single", n_single), ("n_vascular", n_vascular))]

    origin, excess = _gland_excess(rng, dims, density, voxel_mm)
    nipple = np.array([dims["depth"] + 0.3 * dims["nipple"], 0.0, 0.0])
    ducts, vessels = _linear_structures(rng, dims, density, nipple)
    random_lesions = _random_lesions(rng, dims, draws["skin"], counts, spiculated_fraction, vessels)
    if lesions is not None:
        ids = [lesion.id for lesion in lesions]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"breast phantom: lesion ids {ids} repeat; give each lesion its own id")
        outside = [lesion.id for lesion in lesions if not _inside_envelope(dims, lesion.centre_mm, draws["skin"])]
        if outside:
            raise ConfigError(f"breast phantom: lesions {outside} lie outside the breast; move them inside the "
                              f"envelope (depth {dims['depth']:.0f} mm, radii {dims['a']:.0f} and {dims['b']:.0f} mm)")
    return Breast(
        laterality=laterality, depth_mm=dims["depth"], radius_y_mm=dims["a"], radius_z_mm=dims["b"],
        profile=dims["profile"], back_mm=dims["back"], skin_mm=draws["skin"], nipple_radius_mm=dims["nipple"],
        density=density,
        thickness_mm=thickness, spread_x=0.35 * spread, spread_v=0.5 * spread, bulge=bulge,
        mlo_lift_mm=draws["lift"] * spread,
        muscle_offset=draws["muscle_offset"], muscle_slope=draws["muscle_slope"], voxel_mm=voxel_mm,
        origin_mm=origin, gland_excess=excess, ducts=ducts, vessels=vessels,
        lesions=list(lesions) if lesions is not None else random_lesions)


def _random_lesions(rng, dims, skin, counts, spiculated_fraction, vessels) -> list[Lesion]:
    n_masses, n_clusters, n_single, n_vascular = counts
    lesions: list[Lesion] = []
    for _ in range(n_masses):
        form = "spiculated" if rng.uniform() < spiculated_fraction else "round"
        lesions.append(_mass(rng, len(lesions) + 1, dims, form, skin))
    for _ in range(n_clusters):
        lesions.append(_cluster(rng, len(lesions) + 1, dims, skin))
    for _ in range(n_single):
        lesions.append(_single(rng, len(lesions) + 1, dims, skin))
    usable = [v for v in vessels if len(v.points) >= 4]
    for _ in range(n_vascular):
        if not usable:
            raise ConfigError("breast phantom: no vessel long enough for a vascular calcification; use n_vascular=0")
        lesions.append(_vascular(rng, len(lesions) + 1, usable[int(rng.integers(0, len(usable)))]))
    return lesions


# --------------------------------------------------------------------------------------------------------------------
# The image grid
# --------------------------------------------------------------------------------------------------------------------

def breast_extent_mm(breast: Breast) -> tuple[float, float]:
    """The image extent (mm down the rows, across the columns) that holds both views of ``breast``.

    It bounds the compressed breast at the thinnest compression either view
    uses: depth (with the MLO's base behind the chest wall) across the columns,
    and the spread half-width below the MLO's breast axis down the rows.
    """
    radius = max(breast.radius_y_mm, breast.radius_z_mm)
    ratio = max(radius / (breast.thickness_mm / 2), 1.0)
    across = breast.back_mm + (breast.depth_mm + 2 * breast.nipple_radius_mm) * ratio ** breast.spread_x + 8.0
    down = (radius * ratio ** breast.spread_v + 8.0) / (1.0 - MLO_AXIS_ROW)
    return down, across


def breast_pixel_mm(breast: Breast, shape: tuple[int, int]) -> float:
    """The pixel size (mm) at which both views of ``breast`` fit an image of ``shape``: the same for CC and MLO."""
    rows, cols = _check_shape(shape)
    down, across = breast_extent_mm(breast)
    return max(across / cols, down / rows)


@dataclass(frozen=True)
class _Grid:
    """Pixel centres in compressed view coordinates (right-breast layout; a left breast is flipped at the end)."""

    rows: int
    cols: int
    pixel_mm: float
    back_mm: float          # x' at the chest-wall image edge is -back_mm
    v_top_mm: float         # v' at the top image edge

    def x_of_col(self, col):
        return -self.back_mm + (self.cols - np.asarray(col, float) - 0.5) * self.pixel_mm

    def v_of_row(self, row):
        return self.v_top_mm - (np.asarray(row, float) + 0.5) * self.pixel_mm

    def col_of_x(self, x):
        return self.cols - 0.5 - (np.asarray(x, float) + self.back_mm) / self.pixel_mm

    def row_of_v(self, v):
        return (self.v_top_mm - np.asarray(v, float)) / self.pixel_mm - 0.5

    def mesh(self):
        return np.meshgrid(self.v_of_row(np.arange(self.rows)), self.x_of_col(np.arange(self.cols)), indexing="ij")


# --------------------------------------------------------------------------------------------------------------------
# Rasterising
# --------------------------------------------------------------------------------------------------------------------

def render_spheres(shape: tuple[int, int], centres_px: np.ndarray, radii_px: np.ndarray,
                   supersample: int | None = None) -> tuple[np.ndarray, list[tuple[slice, slice, np.ndarray]]]:
    """Projected rigid spheres at sub-pixel precision.

    Returns the mean chord length (in pixels) through the spheres over each
    pixel's area, summed over spheres, and per sphere (row slice, col slice,
    covered fraction of each pixel of its patch). Each pixel is supersampled
    (``supersample`` per side, by default enough for ~4 samples per radius),
    so a sphere's summed chord times the pixel area equals its volume.
    """
    chords = np.zeros(shape, np.float64)
    coverage = []
    for (row, col), radius in zip(np.atleast_2d(centres_px), np.atleast_1d(radii_px)):
        k = supersample or int(np.clip(math.ceil(4.0 / radius), 2, 32))
        r0, r1 = max(int(math.floor(row - radius)) - 1, 0), min(int(math.ceil(row + radius)) + 2, shape[0])
        c0, c1 = max(int(math.floor(col - radius)) - 1, 0), min(int(math.ceil(col + radius)) + 2, shape[1])
        if r0 >= r1 or c0 >= c1:
            coverage.append((slice(0, 0), slice(0, 0), np.zeros((0, 0))))
            continue
        sub = (np.arange(k) + 0.5) / k - 0.5
        rr = (np.arange(r0, r1)[:, None] + sub[None, :]).reshape(-1)
        cc = (np.arange(c0, c1)[:, None] + sub[None, :]).reshape(-1)
        rho2 = (rr[:, None] - row) ** 2 + (cc[None, :] - col) ** 2
        chord = 2.0 * np.sqrt(np.clip(radius ** 2 - rho2, 0.0, None))
        blocks = (r1 - r0, k, c1 - c0, k)
        chords[r0:r1, c0:c1] += chord.reshape(blocks).mean(axis=(1, 3))
        coverage.append((slice(r0, r1), slice(c0, c1), (rho2 < radius ** 2).reshape(blocks).mean(axis=(1, 3))))
    return chords, coverage


def _splat(shape, rows, cols, weights) -> np.ndarray:
    """Bilinear accumulation of weighted points (float pixel coordinates) into an image."""
    out = np.zeros(shape[0] * shape[1], np.float64)
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    fr, fc = rows - r0, cols - c0
    for dr, dc, w in ((0, 0, (1 - fr) * (1 - fc)), (1, 0, fr * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 1, fr * fc)):
        r, c = r0 + dr, c0 + dc
        ok = (r >= 0) & (r < shape[0]) & (c >= 0) & (c < shape[1])
        out += np.bincount(r[ok] * shape[1] + c[ok], weights[ok] * w[ok], minlength=out.size)
    return out.reshape(shape)


def _densify(points: np.ndarray, step_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Points every ``step_mm`` along a polyline and the length each stands for."""
    if len(points) < 2:
        return np.zeros((0, 3)), np.zeros(0)
    seg = np.diff(points, axis=0)
    lengths = np.linalg.norm(seg, axis=1)
    counts = np.maximum(np.ceil(lengths / step_mm).astype(int), 1)
    t = np.concatenate([(np.arange(n) + 0.5) / n for n in counts])
    idx = np.repeat(np.arange(len(seg)), counts)
    return points[idx] + t[:, None] * seg[idx], np.repeat(lengths / counts, counts)


def _tube_layer(breast, comp, grid, curves: list[Curve], tapering: bool = False):
    """Line integral of thin tubes (ducts, vessels, spicules): their volume splatted where it projects, blurred."""
    step = min(grid.pixel_mm / 2, 0.5)
    shape = (grid.rows, grid.cols)
    total = np.zeros(shape)
    radii = []
    for curve in curves:
        points, lengths = _densify(curve.points, step)
        if not len(points):
            continue
        radius = curve.radius_mm * (np.linspace(1.0, 0.3, len(points)) if tapering else 1.0)
        mapped = _compress_points(breast, comp, points)
        weights = np.pi * radius ** 2 * lengths * curve.excess_mu / grid.pixel_mm ** 2
        total += _splat(shape, grid.row_of_v(mapped[:, 1]), grid.col_of_x(mapped[:, 0]), weights)
        radii.append(curve.radius_mm)
    if radii:
        total = ndi.gaussian_filter(total, max(0.6 * float(np.mean(radii)) / grid.pixel_mm, 0.5))
    return total


def _gland_layer(breast: Breast, comp: _Compression, grid: _Grid) -> np.ndarray:
    """The glandular texture's line integral: columns sampled on a voxel-spaced grid, then interpolated to pixels."""
    step = breast.voxel_mm
    scale = step / grid.pixel_mm
    coarse_rows, coarse_cols = int(math.ceil(grid.rows / scale)) + 1, int(math.ceil(grid.cols / scale)) + 1
    vc = grid.v_of_row((np.arange(coarse_rows) + 0.5) * scale - 0.5)[:, None]
    xc = grid.x_of_col((np.arange(coarse_cols) + 0.5) * scale - 0.5)[None, :]
    xc, vc = np.broadcast_arrays(xc, vc)
    n_depth = max(int(math.ceil(2 * _axis_half_thickness(breast, comp.angle_deg) / step)), 8)
    total = np.zeros(xc.shape, np.float64)
    for k in range((n_depth + 1) // 2):  # depths tau and -tau share the in-plane map (the bulge is even in tau)
        tau = 1.0 - (2 * k + 1) / n_depth
        x, v, w, half = _uncompress(breast, comp, xc, vc, tau)
        inside = half > 0
        x, v, w, half = x[inside], v[inside], w[inside], half[inside]
        centre = w - tau * half
        weight = 2 * np.minimum(half, comp.half_gap) / n_depth
        for depth in ((w,) if tau == 0 else (w, centre - tau * half)):
            voxel = (_from_view(x, v, depth, comp.angle_deg) - breast.origin_mm) / breast.voxel_mm
            total[inside] += weight * ndi.map_coordinates(breast.gland_excess, voxel.T, order=1, mode="constant")
    rows = (np.arange(grid.rows) + 0.5) / scale - 0.5
    cols = (np.arange(grid.cols) + 0.5) / scale - 0.5
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    return ndi.map_coordinates(total, [rr, cc], order=1, mode="nearest")


def _body_layers(breast: Breast, comp: _Compression, grid: _Grid):
    """Fat and skin per pixel from the mid-plane map, and the footprint (the breast mask)."""
    vv, xx = grid.mesh()
    x, v, _, half = _uncompress(breast, comp, xx, vv, 0.0)
    _, inner = _column(breast, x, v, comp.angle_deg, shrink=breast.skin_mm)
    gap = np.minimum(half, comp.half_gap)
    squeeze = np.divide(gap, half, out=np.zeros_like(half), where=half > 0)
    skin_path = 2 * (half - inner) * squeeze
    fat_path = 2 * inner * squeeze
    return MU_FAT * fat_path + MU_SKIN * skin_path, half > 0, gap


def _muscle_layer(breast: Breast, comp: _Compression, grid: _Grid, gap: np.ndarray):
    """The MLO's pectoral muscle: its front face, a plane rising to the axilla, seen as a triangle in the upper corner.

    The face is x = -back + slope * (d.p - offset * R_v) with d the superolateral
    direction; at the mid-plane d.p = v (sin a + cos a) / sqrt(2). The chest wall
    holds the muscle, so it is spread in v as the tissue at the chest wall is,
    not in x. Its path grows from the face (2 mm per mm) to the full
    compressed thickness.
    """
    vv, xx = grid.mesh()
    sn, cs = _view_axes(comp.angle_deg)
    along = comp.v_inverse(np.zeros_like(vv), vv) * (sn + cs) / math.sqrt(2)
    face = -breast.back_mm + breast.muscle_slope * (along - breast.muscle_offset * _half_width_v(breast,
                                                                                                      comp.angle_deg))
    depth_in = face - xx
    path = np.clip(2.0 * depth_in, 0.0, 2 * comp.half_gap)
    attenuation = MU_MUSCLE * path - MU_FAT * np.minimum(path, 2 * gap)
    return attenuation, depth_in > 0


def _local_jacobian(breast, comp, centre: np.ndarray, step: float = 0.5) -> np.ndarray:
    offsets = np.concatenate([np.eye(3), -np.eye(3)]) * step
    mapped = _compress_points(breast, comp, centre + offsets)
    return (mapped[:3] - mapped[3:]).T / (2 * step)


def _ellipsoid_chords(grid: _Grid, centre_c: np.ndarray, metric: np.ndarray, supersample: int = 2):
    """Chord length (mm) along w' through {q: (q - c)^T M (q - c) <= 1} per pixel (mean over subsamples), coverage."""
    reach = 1.0 / np.sqrt(np.clip(np.linalg.eigvalsh(metric).min(), 1e-12, None))
    row, col = float(grid.row_of_v(centre_c[1])), float(grid.col_of_x(centre_c[0]))
    radius_px = reach / grid.pixel_mm + 2
    r0, r1 = max(int(row - radius_px), 0), min(int(row + radius_px) + 2, grid.rows)
    c0, c1 = max(int(col - radius_px), 0), min(int(col + radius_px) + 2, grid.cols)
    k = supersample
    sub = (np.arange(k) + 0.5) / k - 0.5
    rr = (np.arange(r0, r1)[:, None] + sub).reshape(-1)
    cc = (np.arange(c0, c1)[:, None] + sub).reshape(-1)
    dv = (grid.v_of_row(rr) - centre_c[1])[:, None]
    dx = (grid.x_of_col(cc) - centre_c[0])[None, :]
    a = metric[2, 2]
    b = metric[0, 2] * dx + metric[1, 2] * dv
    c = metric[0, 0] * dx ** 2 + 2 * metric[0, 1] * dx * dv + metric[1, 1] * dv ** 2 - 1.0
    chord = 2 * np.sqrt(np.clip(b ** 2 - a * c, 0.0, None)) / a
    blocks = (r1 - r0, k, c1 - c0, k)
    return (slice(r0, r1), slice(c0, c1)), chord.reshape(blocks).mean(axis=(1, 3)), \
        (chord > 0).reshape(blocks).mean(axis=(1, 3))


def _extent_ellipse(breast, comp, grid, centre: np.ndarray, metric: np.ndarray):
    jac = _local_jacobian(breast, comp, centre)
    inv = np.linalg.inv(jac)
    centre_c = _compress_points(breast, comp, centre[None])[0]
    return _ellipsoid_chords(grid, centre_c, inv.T @ metric @ inv)


def _mass_layers(breast, comp, grid, lesion: Lesion, shape):
    """A mass: its core (an ellipsoid deformed by the local compression) plus spicules; attenuation and mask."""
    metric = lesion.rotation @ np.diag(lesion.semi_axes_mm ** -2.0) @ lesion.rotation.T
    (rows, cols), chord, cover = _extent_ellipse(breast, comp, grid, lesion.centre_mm, metric)
    attenuation = np.zeros(shape)
    attenuation[rows, cols] = (MU_MASS - MU_FAT) * chord
    mask = np.zeros(shape, bool)
    mask[rows, cols] = cover >= 0.5
    if lesion.spicules is not None:
        curves = [Curve(np.linspace(s[0], s[1], 8), 0.35, MU_MASS - MU_FAT) for s in lesion.spicules]
        spicules = _tube_layer(breast, comp, grid, curves, tapering=True)
        attenuation += spicules
        mask |= spicules > 0.02 * (MU_MASS - MU_FAT) * 0.35
    return attenuation, mask


def _calcification_layers(breast, comp, grid, lesion: Lesion, shape):
    """Rigid spheres at their compressed positions, the particles' own mask and the lesion's extent mask."""
    mapped = _compress_points(breast, comp, lesion.particles[:, :3])
    centres = np.column_stack([grid.row_of_v(mapped[:, 1]), grid.col_of_x(mapped[:, 0])])
    radii = lesion.particles[:, 3] / 2 / grid.pixel_mm
    chords, coverage = render_spheres(shape, centres, radii)
    particles = np.zeros(shape, bool)
    for rows, cols, cover in coverage:
        if cover.size:
            if cover.max() >= 0.5:
                particles[rows, cols] |= cover >= 0.5
            else:  # a sub-pixel speck still marks the pixel it covers most
                r, c = np.unravel_index(np.argmax(cover), cover.shape)
                particles[rows.start + r, cols.start + c] = True
    if lesion.form == "cluster":
        radius = float(lesion.extent_mm.max())
        window, _, cover = _extent_ellipse(breast, comp, grid, lesion.centre_mm, np.eye(3) / radius ** 2)
        region = np.zeros(shape, bool)
        region[window] = cover >= 0.5
        extent_mask = region | particles
    elif lesion.form == "vascular":
        margin = 1.0 / grid.pixel_mm
        _, wide = render_spheres(shape, centres, radii + margin, supersample=2)
        extent_mask = particles.copy()
        for rows, cols, cover in wide:
            if cover.size:
                extent_mask[rows, cols] |= cover >= 0.5
    else:
        extent_mask = particles
    return (MU_CALCIFICATION - MU_FAT) * chords * grid.pixel_mm, particles, extent_mask, centres


# --------------------------------------------------------------------------------------------------------------------
# Film
# --------------------------------------------------------------------------------------------------------------------

def _film(attenuation: np.ndarray, breast_mask: np.ndarray) -> np.ndarray:
    """The film's characteristic curve with exposure set from the breast (automatic exposure control).

    Density = sigmoid(k (L - L_mid)) with L_mid and k from the 5th and 95th
    percentiles of the breast's line integral L, then rescaled so air (L = 0) is 0.
    """
    values = attenuation[breast_mask]
    low, high = np.percentile(values, [5, 95]) if values.size else (0.0, 1.0)
    low = max(low, 0.3 * high)
    mid, gain = (low + high) / 2, 3.0 / max(high - low, 1e-6)
    floor = 1.0 / (1.0 + math.exp(gain * mid))
    density = 1.0 / (1.0 + np.exp(-gain * (attenuation - mid)))
    return np.clip((density - floor) / (1.0 - floor), 0.0, 1.0)


def _apply_film_effects(rng, image, occupied, effects: FilmEffects, pixel_mm: float, laterality: str) -> dict:
    """Grain noise, a scanner border strip and a label patch, placed off the breast and muscle; what was added."""
    added: dict = {}
    rows, cols = image.shape
    if effects.noise_sd > 0:
        grain = ndi.gaussian_filter(rng.standard_normal(image.shape), max(0.05 / pixel_mm, 0.0))
        grain /= max(float(grain.std()), 1e-9)
        image += effects.noise_sd * (grain * (0.5 + image))
        added["noise_sd"] = effects.noise_sd
    if effects.border:
        width = int(max(2, rng.uniform(0.01, 0.04) * min(rows, cols)))
        edges = {"top": (slice(0, width), slice(None)), "bottom": (slice(rows - width, rows), slice(None)),
                 "nipple_side": (slice(None), slice(0, width) if laterality == "R" else slice(cols - width, cols))}
        order = list(edges)
        rng.shuffle(order)
        value = float(rng.choice([rng.uniform(0.85, 1.0), rng.uniform(0.0, 0.04)]))
        free = [e for e in order if not occupied[edges[e]].any()]
        if free:
            image[edges[free[0]]] = value
            occupied[edges[free[0]]] = True
            added["border"] = {"edge": free[0], "width_px": width, "value": round(value, 4)}
    if effects.label:
        added["label"] = _place_label(rng, image, occupied)
    np.clip(image, 0.0, 1.0, out=image)
    return added


def _place_label(rng, image, occupied) -> list[int] | None:
    """A text-like block (a bright card with dark glyph strokes) where it hides neither breast nor muscle."""
    rows, cols = image.shape
    height, width = max(int(0.06 * rows), 6), max(int(0.25 * cols), 12)
    grow = ndi.binary_dilation(occupied, iterations=2)
    candidates = [(r, c) for r in (int(0.02 * rows), int(0.9 * rows) - height, int(0.45 * rows))
                  for c in (int(0.03 * cols), cols - width - int(0.03 * cols))]
    rng.shuffle(candidates)
    for r, c in candidates:
        if r < 0 or c < 0 or r + height > rows or c + width > cols or grow[r:r + height, c:c + width].any():
            continue
        card = np.full((height, width), rng.uniform(0.8, 0.95))
        glyph_h, glyph_w = max(height // 2, 2), max(width // 12, 2)
        for g in range(int(width / (glyph_w * 1.5))):
            strokes = rng.uniform(size=(glyph_h, glyph_w)) < 0.45
            top, left = (height - glyph_h) // 2, int(g * glyph_w * 1.5) + glyph_w // 4
            card[top:top + glyph_h, left:left + glyph_w][strokes] = rng.uniform(0.05, 0.2)
        image[r:r + height, c:c + width] = card
        return [r, c, r + height, c + width]
    return None


# --------------------------------------------------------------------------------------------------------------------
# The views
# --------------------------------------------------------------------------------------------------------------------

def map_points(breast: Breast, points_mm: np.ndarray, view: dict) -> np.ndarray:
    """Breast-frame points (n, 3) -> (row, col) in a view, given the view's ``params`` (sub-pixel, after mirroring)."""
    comp = _compression(breast, view["angle_deg"], view["thickness_mm"])
    grid = _Grid(view["shape"][0], view["shape"][1], view["pixel_mm"], view["back_mm"], view["v_top_mm"])
    mapped = _compress_points(breast, comp, np.atleast_2d(points_mm))
    rows, cols = grid.row_of_v(mapped[:, 1]), grid.col_of_x(mapped[:, 0])
    if breast.laterality == "L":
        cols = grid.cols - 1 - cols
    return np.column_stack([rows, cols])


def _project(breast: Breast, rng: np.random.Generator, view: str, angle_deg: float, thickness_mm: float,
             shape, pixel_mm: float | None, film: FilmEffects | None) -> ProjectedView:
    rows, cols = _check_shape(shape)
    pixel = breast_pixel_mm(breast, (rows, cols)) if pixel_mm is None else _check_range("pixel_mm", pixel_mm, 0.01, 5)
    back = CC_BACK_MM if view == "CC" else breast.back_mm
    axis_row = 0.5 if view == "CC" else MLO_AXIS_ROW
    grid = _Grid(rows, cols, pixel, back, axis_row * rows * pixel)
    comp = _compression(breast, angle_deg, thickness_mm)

    attenuation, breast_mask, gap = _body_layers(breast, comp, grid)
    attenuation += _gland_layer(breast, comp, grid) * breast_mask
    attenuation += _tube_layer(breast, comp, grid, breast.ducts + breast.vessels)
    muscle_mask = np.zeros_like(breast_mask)
    if view == "MLO":
        muscle, muscle_mask = _muscle_layer(breast, comp, grid, gap)
        attenuation += muscle

    lesion_masks, calc_masks, centres = {}, {}, {}
    for lesion in breast.lesions:
        if lesion.kind == "mass":
            extra, mask = _mass_layers(breast, comp, grid, lesion, (rows, cols))
        else:
            extra, calc_masks[lesion.id], mask, _ = _calcification_layers(breast, comp, grid, lesion, (rows, cols))
        attenuation += extra
        lesion_masks[lesion.id] = mask
        centre = _compress_points(breast, comp, lesion.centre_mm[None])[0]
        centres[lesion.id] = (float(grid.row_of_v(centre[1])), float(grid.col_of_x(centre[0])))

    blur = PSF_SIGMA_MM / pixel
    if blur >= 0.3:
        attenuation = ndi.gaussian_filter(attenuation, blur)
    image = _film(attenuation, breast_mask & ~muscle_mask)
    params = {"view": view, "laterality": breast.laterality, "angle_deg": float(angle_deg),
              "thickness_mm": float(thickness_mm), "pixel_mm": float(pixel), "shape": [rows, cols],
              "back_mm": float(back), "v_top_mm": float(grid.v_top_mm), "spread_x": breast.spread_x,
              "spread_v": breast.spread_v, "bulge": breast.bulge}
    if breast.laterality == "L":
        flip = lambda a: np.ascontiguousarray(a[:, ::-1])  # noqa: E731
        image, breast_mask, muscle_mask = flip(image), flip(breast_mask), flip(muscle_mask)
        lesion_masks = {k: flip(m) for k, m in lesion_masks.items()}
        calc_masks = {k: flip(m) for k, m in calc_masks.items()}
        centres = {k: (r, cols - 1 - c) for k, (r, c) in centres.items()}
    if film is not None:
        occupied = breast_mask | muscle_mask
        params["film"] = _apply_film_effects(rng, image, occupied.copy(), film, pixel, breast.laterality)
    return ProjectedView(image.astype(np.float32), breast_mask, muscle_mask, lesion_masks, calc_masks, centres, params)


def project_cc(breast: Breast, rng: np.random.Generator, shape: tuple[int, int] = DEFAULT_SHAPE, *,
               thickness_mm: float | None = None, pixel_mm: float | None = None,
               film: FilmEffects | None = FilmEffects()) -> ProjectedView:
    """The cranio-caudal view: compression along the cranio-caudal axis (the breast's ``thickness_mm`` by default).

    ``pixel_mm`` None fits both views of the breast into ``shape`` at one pixel
    size (:func:`breast_pixel_mm`); ``film`` None gives the clean projection.
    """
    thickness = breast.thickness_mm if thickness_mm is None else _check_range("thickness_mm", thickness_mm, 20, 90)
    return _project(breast, rng, "CC", 0.0, thickness, shape, pixel_mm, film)


def project_mlo(breast: Breast, rng: np.random.Generator, shape: tuple[int, int] = DEFAULT_SHAPE, *,
                angle_deg: float | None = None, thickness_mm: float | None = None, pixel_mm: float | None = None,
                film: FilmEffects | None = FilmEffects()) -> ProjectedView:
    """The mediolateral-oblique view: compression along an axis rotated 45-50 degrees (drawn from ``rng``).

    The compressed thickness is the breast's times 1.0-1.15 (drawn) unless
    given; the pectoral muscle shows as a triangle in the upper corner on the
    chest-wall side.
    """
    angle_draw, factor = rng.uniform(45.0, 50.0), rng.uniform(1.0, 1.15)
    angle = angle_draw if angle_deg is None else _check_range("angle_deg", angle_deg, 0.0, 90.0)
    thickness = breast.thickness_mm * factor if thickness_mm is None else _check_range("thickness_mm", thickness_mm,
                                                                                       20, 90)
    return _project(breast, rng, "MLO", angle, thickness, shape, pixel_mm, film)
