"""ANTs (antspyx) registration of 3-D volumes given as NumPy arrays, SyN by default.

Volumes are (z, y, x) arrays on one grid: ``spacing`` is (x, y, z) in mm,
the origin 0 and the direction the identity, so the physical point of voxel
index (i, j, k) = (x, y, z) is ``(i, j, k) * spacing``. ANTs keeps points in
that frame (ITK's LPS, no sign flips for images built this way).

Two directions, as in ANTs:

* images: the registration maps each fixed-grid point p to the moving image,
  ``T(p) = p + displacement(p)``, and the warped image is ``moving(T(p))``.
  ``SynResult.displacement`` holds ``T(p) - p`` in voxels with channels
  x, y, z, the convention of :func:`medrepro.spatial.warp.warp`, so
  ``warp(moving, displacement)`` reproduces ``SynResult.warped``.
* points: a point q in the moving image goes to ``T^-1(q)`` in the fixed
  image (:func:`moving_points_to_fixed`, through ANTs' inverse transforms).
  If the moving image shows a feature of the fixed image shifted by +s
  voxels, the displacement is +s and moving points move by -s.

ANTs writes its transforms as files; they live in a private temporary folder
that is removed when the call ends (also on error) and are kept in memory as
bytes (:class:`AntsTransforms`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

Spacing = tuple[float, float, float]
THREADS_ENV = "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"
_TEMP_PREFIX = "medrepro-ants-"


@dataclasses.dataclass(frozen=True)
class SynSettings:
    """Parameters of ``ants.registration`` (antspyx 0.6.3), with their ANTs meaning.

    ``type_of_transform``: an ``ants.registration`` type ("SyN", "SyNOnly",
    "Translation", "Rigid", "Affine", ...). ``syn_metric``/``syn_sampling``:
    the deformable metric and its parameter (the CC radius in voxels).
    ``grad_step``, ``flow_sigma``, ``total_sigma``: SyN's step and the
    smoothing of its update and total fields. ``reg_iterations``: SyN
    iterations per level, coarse to fine (the level count sets shrink
    factors 2**k and smoothing sigmas k). ``aff_*``: the linear stage; in
    antspyx 0.6.3 only the linear-only types read ``aff_iterations``,
    ``aff_shrink_factors`` and ``aff_smoothing_sigmas`` (the "SyN" type runs
    its affine stage at a fixed 2100x1200x1200x0). ``centre_of_mass_init``:
    start from the translation that aligns intensity centres of mass (ANTs'
    default; meaningless for images with negative values), else identity.
    ``random_seed``: seeds ANTs' metric sampling; ANTs treats 0 as unset.
    ``threads``: ITK threads; None keeps this process's ITK default. On one
    thread a fixed seed gives identical results; on several, only with
    metrics that sum in a fixed order (CC, meansquares, GC): Mattes MI
    (``aff_metric``'s default, read by every linear stage) varies slightly
    from run to run.
    """

    type_of_transform: str = "SyN"
    syn_metric: str = "CC"
    syn_sampling: int = 2
    grad_step: float = 0.2
    flow_sigma: float = 3.0
    total_sigma: float = 0.0
    reg_iterations: tuple[int, ...] = (40, 20, 0)
    aff_metric: str = "mattes"
    aff_iterations: tuple[int, ...] = (2100, 1200, 1200, 10)
    aff_shrink_factors: tuple[int, ...] = (6, 4, 2, 1)
    aff_smoothing_sigmas: tuple[float, ...] = (3.0, 2.0, 1.0, 0.0)
    centre_of_mass_init: bool = True
    random_seed: int = 1
    threads: int | None = None


@dataclasses.dataclass(frozen=True)
class AntsTransforms:
    """ANTs transform files held in memory as (file name, bytes), in ANTs' list order.

    ``fwdtransforms`` map fixed-grid points into the moving image (they
    resample the moving image onto the fixed grid); ``invtransforms`` carry
    moving-image points into the fixed image, with every ``.mat`` (affine)
    entry inverted. ``spacing`` (x, y, z mm) is the grid both images had.
    """

    fwdtransforms: tuple[tuple[str, bytes], ...]
    invtransforms: tuple[tuple[str, bytes], ...]
    spacing: Spacing


@dataclasses.dataclass(frozen=True)
class SynResult:
    """Outcome of :func:`register_syn`.

    ``warped``: the moving image on the fixed grid, (z, y, x) float32.
    ``displacement``: (3, D, H, W) float32 in voxels, channels x, y, z, with
    ``warped(p) = moving(p + displacement(p))``. ``seconds``: wall-clock time
    of ``ants.registration`` itself.
    """

    warped: np.ndarray
    displacement: np.ndarray
    transforms: AntsTransforms
    seconds: float

    def moving_points_to_fixed(self, points_xyz: np.ndarray) -> np.ndarray:
        """Moving-image voxel points (n, 3) = (x, y, z) -> fixed-image voxel points."""
        return moving_points_to_fixed(self.transforms, points_xyz)


def _ants():
    """Import antspyx on first use: it is slow to load, and ITK fixes its thread count at first use."""
    import ants

    return ants


# ------------------------------------------------------------------ checks
def _check_volume(volume: np.ndarray, what: str) -> np.ndarray:
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"{what} must be a 3-D (z, y, x) array, got shape {volume.shape}")
    if min(volume.shape) < 4:
        raise ValueError(f"{what} is too small to register: shape {volume.shape}")
    if not np.issubdtype(volume.dtype, np.number) or not np.all(np.isfinite(volume)):
        raise ValueError(f"{what} must hold finite numbers")
    return np.ascontiguousarray(volume, dtype=np.float32)


def _check_spacing(spacing) -> Spacing:
    values = tuple(float(v) for v in np.asarray(spacing, dtype=np.float64).ravel())
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"spacing must be three positive finite numbers (x, y, z) in mm, got {spacing!r}")
    return values


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _int_levels(name: str, values, minimum: int) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or len(values) == 0:
        raise ValueError(f"{name} must be a non-empty sequence of integers, got {values!r}")
    return tuple(_positive_int(f"{name} entries", v, minimum) for v in values)


def _check_settings(settings: SynSettings) -> None:
    if not isinstance(settings.type_of_transform, str) or not settings.type_of_transform:
        raise ValueError(f"type_of_transform must be a non-empty string, got {settings.type_of_transform!r}")
    _int_levels("reg_iterations", settings.reg_iterations, 0)
    levels = [len(_int_levels("aff_iterations", settings.aff_iterations, 0)),
              len(_int_levels("aff_shrink_factors", settings.aff_shrink_factors, 1)),
              len(settings.aff_smoothing_sigmas)]
    if len(set(levels)) != 1:
        raise ValueError(f"aff_iterations, aff_shrink_factors and aff_smoothing_sigmas need one entry per level, "
                         f"got {levels[0]}, {levels[1]} and {levels[2]}")
    _positive_int("syn_sampling", settings.syn_sampling)
    _positive_int("random_seed", settings.random_seed)
    if settings.threads is not None:
        _positive_int("threads", settings.threads)


def _check_points(points_xyz) -> np.ndarray:
    points = np.asarray(points_xyz, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be an (n, 3) array of (x, y, z) voxel positions, got shape {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError("points contain NaN or infinite values")
    return points


# -------------------------------------------------------------- conversions
def _to_ants(volume: np.ndarray, spacing: Spacing):
    # ANTs arrays are indexed (x, y, z), ours (z, y, x).
    return _ants().from_numpy(np.ascontiguousarray(volume.transpose(2, 1, 0)), origin=(0.0, 0.0, 0.0),
                              spacing=spacing)


def _from_ants(image) -> np.ndarray:
    return np.ascontiguousarray(image.numpy().transpose(2, 1, 0), dtype=np.float32)


def _registration_kwargs(settings: SynSettings) -> dict:
    # ants.registration only takes tuples here: a list makes it fall back on its own levels.
    return dict(
        type_of_transform=settings.type_of_transform,
        initial_transform=None if settings.centre_of_mass_init else "Identity",
        syn_metric=settings.syn_metric,
        syn_sampling=int(settings.syn_sampling),
        grad_step=float(settings.grad_step),
        flow_sigma=float(settings.flow_sigma),
        total_sigma=float(settings.total_sigma),
        reg_iterations=tuple(int(v) for v in settings.reg_iterations),
        aff_metric=settings.aff_metric,
        aff_iterations=tuple(int(v) for v in settings.aff_iterations),
        aff_shrink_factors=tuple(int(v) for v in settings.aff_shrink_factors),
        aff_smoothing_sigmas=tuple(float(v) for v in settings.aff_smoothing_sigmas),
    )


@contextlib.contextmanager
def _ants_random_seed(ants, seed: int):
    """antspyx 0.6.3 passes ``--random-seed`` only from ``ants.config``; a ``random_seed`` keyword is ignored."""
    previous = ants.config._random_seed
    ants.config._random_seed = seed
    try:
        yield
    finally:
        ants.config._random_seed = previous


def _composite_displacement(fixed_image, moving_image, fwd_paths: list[str], folder: str,
                            spacing: Spacing) -> np.ndarray:
    """``T(p) - p`` on the fixed grid, (3, D, H, W) voxels: ANTs samples the composed transforms there."""
    path = _ants().apply_transforms(fixed_image, moving_image, fwd_paths, compose=os.path.join(folder, "composite_"))
    if path is None:
        raise RuntimeError("ANTs did not write the composite displacement field")
    field_mm = _ants().image_read(path).numpy()  # (x, y, z, 3), physical mm
    return np.stack([field_mm[..., axis].T / spacing[axis] for axis in range(3)]).astype(np.float32)


def _read_files(paths) -> tuple[tuple[str, bytes], ...]:
    paths = [paths] if isinstance(paths, str) else list(paths)
    if not paths or not all(paths):
        raise RuntimeError(f"ANTs returned no transform files: {paths!r}")
    out = []
    for path in paths:
        with open(path, "rb") as handle:
            out.append((os.path.basename(path), handle.read()))
    return tuple(out)


def _write_files(folder: str, files: tuple[tuple[str, bytes], ...]) -> list[str]:
    paths = []
    for name, content in files:
        path = os.path.join(folder, os.path.basename(name))
        with open(path, "wb") as handle:
            handle.write(content)
        paths.append(path)
    return paths


@contextlib.contextmanager
def transform_files(transforms: AntsTransforms):
    """Write the transforms to a private temporary folder; yields (fwd paths, inv paths), removed on exit."""
    with tempfile.TemporaryDirectory(prefix=_TEMP_PREFIX) as folder:
        yield _write_files(folder, transforms.fwdtransforms), _write_files(folder, transforms.invtransforms)


# ------------------------------------------------------------- registration
def _register_in(folder: str, fixed: np.ndarray, moving: np.ndarray, spacing: Spacing,
                 settings: SynSettings) -> SynResult:
    """The registration itself, writing only into ``folder``."""
    ants = _ants()
    fixed_image, moving_image = _to_ants(fixed, spacing), _to_ants(moving, spacing)
    start = time.perf_counter()
    with _ants_random_seed(ants, settings.random_seed):
        output = ants.registration(fixed_image, moving_image, outprefix=os.path.join(folder, "reg_"),
                                   **_registration_kwargs(settings))
    seconds = time.perf_counter() - start
    transforms = AntsTransforms(_read_files(output["fwdtransforms"]), _read_files(output["invtransforms"]), spacing)
    displacement = _composite_displacement(fixed_image, moving_image, list(output["fwdtransforms"]), folder, spacing)
    return SynResult(warped=_from_ants(output["warpedmovout"]), displacement=displacement,
                     transforms=transforms, seconds=seconds)


def register_syn(fixed: np.ndarray, moving: np.ndarray, spacing, settings: SynSettings | None = None) -> SynResult:
    """Register ``moving`` onto ``fixed`` with ``ants.registration``.

    Both are (z, y, x) arrays of one shape on one grid of ``spacing`` (x, y, z
    mm). With ``settings.threads`` set, the registration runs in a worker
    process pinned to that many ITK threads (ITK reads its thread count once
    per process), kept for later calls (:func:`shutdown_workers`); a script
    that calls it must guard its main code with ``if __name__ == "__main__"``.
    See :class:`SynSettings` for when a fixed seed gives identical results.
    """
    settings = settings or SynSettings()
    fixed = _check_volume(fixed, "fixed image")
    moving = _check_volume(moving, "moving image")
    if fixed.shape != moving.shape:
        raise ValueError(f"fixed image {fixed.shape} and moving image {moving.shape} must share one grid")
    spacing = _check_spacing(spacing)
    _check_settings(settings)
    with tempfile.TemporaryDirectory(prefix=_TEMP_PREFIX) as folder:
        if settings.threads is None:
            return _register_in(folder, fixed, moving, spacing, settings)
        return _run_with_threads(settings.threads, _register_in, folder, fixed, moving, spacing, settings)


def moving_points_to_fixed(transforms: SynResult | AntsTransforms, points_xyz, spacing=None) -> np.ndarray:
    """Carry moving-image voxel points (n, 3) = (x, y, z), sub-voxel, into fixed-image voxels.

    ANTs maps points opposite to images: the inverse transforms, affine
    inverted, so q goes to ``T^-1(q)`` where ``warped(p) = moving(T(p))``.
    ``spacing`` defaults to the registration's; another value is an error.
    """
    transforms = transforms.transforms if isinstance(transforms, SynResult) else transforms
    if spacing is not None and _check_spacing(spacing) != transforms.spacing:
        raise ValueError(f"the transforms were found at spacing {transforms.spacing}, not {tuple(spacing)}")
    points = _check_points(points_xyz)
    if len(points) == 0:
        return points.copy()
    import pandas as pd

    scale = np.asarray(transforms.spacing)
    frame = pd.DataFrame(points * scale, columns=["x", "y", "z"])
    with transform_files(transforms) as (_, inverse_paths):
        invert_affines = [path.endswith(".mat") for path in inverse_paths]
        mapped = _ants().apply_transforms_to_points(3, frame, inverse_paths, whichtoinvert=invert_affines)
    return mapped[["x", "y", "z"]].to_numpy(dtype=np.float64) / scale


# ------------------------------------------------------- thread-pinned workers
_WORKERS: dict[int, ProcessPoolExecutor] = {}
_WORKERS_LOCK = threading.Lock()


def _pin_itk_threads(threads: int) -> None:
    """Worker start-up: set ITK's thread count before antspyx is imported there."""
    os.environ[THREADS_ENV] = str(threads)


def _worker(threads: int) -> ProcessPoolExecutor:
    with _WORKERS_LOCK:
        if threads not in _WORKERS:
            _WORKERS[threads] = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                                    initializer=_pin_itk_threads, initargs=(threads,))
        return _WORKERS[threads]


def _pin_in_process(threads: int) -> bool:
    """Pin this process's ITK thread count when antspyx is not loaded yet (a pipeline job's first registration);
    True when the process runs at ``threads``."""
    global _PROCESS_THREADS
    if _PROCESS_THREADS is None and "ants" not in sys.modules:
        os.environ[THREADS_ENV] = str(threads)
        _PROCESS_THREADS = threads
    return _PROCESS_THREADS == threads


_PROCESS_THREADS: int | None = None


def _run_with_threads(threads: int, function, *args):
    """In this process when its ITK runs (or can still be set to run) at ``threads``; else in a worker process
    started for that count (a spawned process: the calling script must guard its main code)."""
    if _pin_in_process(threads):
        return function(*args)
    worker = _worker(threads)
    try:
        return worker.submit(function, *args).result()
    except BrokenProcessPool as error:
        with _WORKERS_LOCK:
            if _WORKERS.get(threads) is worker:
                del _WORKERS[threads]
        raise RuntimeError(f"the ANTs worker process ({threads} ITK threads) died") from error


def shutdown_workers() -> None:
    """Stop the thread-pinned worker processes (they restart on demand)."""
    with _WORKERS_LOCK:
        workers = list(_WORKERS.values())
        _WORKERS.clear()
    for worker in workers:
        worker.shutdown(wait=True)
