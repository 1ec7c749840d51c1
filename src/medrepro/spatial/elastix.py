"""elastix registration through itk-elastix: parameter maps and numpy-level calls.

Parameter maps
    Studies ship their elastix parameter files (the chest study's hold the
    values the AC-RegNet authors published) and read them with
    :func:`load_parameter_map`. A map is a plain
    ``dict[str, list[str]]``, exactly as elastix stores it, so it can be
    compared, logged and pickled; :func:`with_overrides` applies the pipeline's
    configuration (iterations, resolutions, grid spacing, samples, seed,
    threads).

Determinism
    Both maps sample the images at random positions (``ImageSampler
    "Random"``). elastix seeds that sampler from the ``RandomSeed`` parameter
    at the start of every registration, so with :func:`with_overrides`
    ``seed=`` set from the pipeline seed a registration is repeatable: the
    same inputs, map and thread count give bit-identical results on the same
    machine. A different thread count (or CPU) may change the order in which
    the multi-threaded metric sums its terms and therefore the last bits.

Coordinates
    Arrays are indexed (row, col); elastix works in physical (x, y) =
    (col, row). A spacing is given as (row, col) in mm; ``None`` means one
    unit per pixel, which is how the authors ran elastix on PNG files (their
    ``MaximumStepLength`` and bending-energy weight are calibrated for that).
    Every image has origin 0 and identity direction. An elastix transform
    maps a point of the *fixed* image to the *moving* image.

Masks
    :func:`register` optionally takes a fixed and a moving mask (boolean
    arrays on their images' grids, handed to elastix as uint8 images with the
    same spacing), so that only the masked tissue drives the metric. With a
    fixed mask, the ``"Random"`` sampler is not repeatable (with itk-elastix
    0.25 it ignores ``RandomSeed`` when drawing inside a mask); use
    ``"RandomCoordinate"`` or ``"RandomSparseMask"``, which stay seeded.

Cost
    The first use of ``itk`` loads its compiled modules (about 15 s); the
    import is deferred to the first registration so that reading and
    overriding parameter maps stays cheap. Register many images per process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from medrepro.data.atomic import write_text
from medrepro.errors import ConfigError, DataError

ParameterMap = dict[str, list[str]]
TransformMaps = tuple[ParameterMap, ...]
Spacing = tuple[float, float] | None

# Not an elastix parameter: elastix takes its thread count on the command
# line. The pipeline keeps it in the map so one object carries the whole
# configuration; register() removes it before elastix sees the map.
THREADS_KEY = "NumberOfThreads"

_LINE = re.compile(r"^\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*(.*?)\s*\)$")
_TOKEN = re.compile(r'"([^"]*)"|(\S+)')
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


# ------------------------------------------------------------ parameter maps
def parse_parameter_text(text: str, source: str | Path | None = None) -> ParameterMap:
    """Parse elastix parameter-file text: ``(Key value ...)`` lines, ``//`` comments.

    Quoted values lose their quotes, as in elastix's own parameter maps.
    """
    pmap: ParameterMap = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _strip_comment(raw).strip()
        if not line:
            continue
        match = _LINE.match(line)
        if match is None:
            raise DataError(source, f"line {number}: not an elastix '(Key value ...)' entry: {raw.strip()!r}")
        key, rest = match.groups()
        values = [m.group(1) if m.group(1) is not None else m.group(2) for m in _TOKEN.finditer(rest)]
        if not values:
            raise DataError(source, f"line {number}: parameter {key} has no value")
        if key in pmap:
            raise DataError(source, f"line {number}: parameter {key} is given twice")
        pmap[key] = values
    return pmap


def _strip_comment(line: str) -> str:
    """Drop a ``//`` comment unless it sits inside a quoted value."""
    in_quotes = False
    for i, char in enumerate(line):
        if char == '"':
            in_quotes = not in_quotes
        elif char == "/" and not in_quotes and line.startswith("//", i):
            return line[:i]
    return line


def load_parameter_map(path: str | Path) -> ParameterMap:
    """Read an elastix parameter file (``.txt``)."""
    path = Path(path)
    if path.suffix != ".txt":
        raise ConfigError(f"{str(path)!r} is not an elastix parameter file; give a .txt file")
    if not path.is_file():
        raise DataError(path, "elastix parameter file is missing")
    return parse_parameter_text(path.read_text(), source=path)


def format_parameter_map(pmap: Mapping[str, Sequence[str]]) -> str:
    """Render a map in elastix's parameter-file syntax (numbers bare, words quoted)."""
    lines = []
    for key in sorted(pmap):
        values = " ".join(v if _NUMBER.match(v) else f'"{v}"' for v in pmap[key])
        lines.append(f"({key} {values})")
    return "\n".join(lines) + "\n"


def write_parameter_file(pmap: Mapping[str, Sequence[str]], path: str | Path) -> None:
    """Write a map as an elastix parameter file (atomically)."""
    write_text(path, format_parameter_map(pmap))


def _positive_int(name: str, value: Any, upper: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"elastix override {name} must be a positive integer, got {value!r}")
    if upper is not None and value > upper:
        raise ConfigError(f"elastix override {name} must be at most {upper}, got {value!r}")
    return int(value)


def _elastix_value(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise ConfigError(f"elastix parameter values must be finite, got {value!r}")
        return repr(float(value))
    return str(value)


def _dimension(pmap: Mapping[str, Sequence[str]]) -> int:
    return int(pmap.get("FixedImageDimension", ["2"])[0])


def _resize_schedule(values: Sequence[str], dims: int, levels: int) -> list[str]:
    """Adapt a per-level schedule (``dims`` values per level) to ``levels`` levels.

    Fewer levels keep the finest ones; more levels prepend coarser ones, each
    doubling the coarsest factor. The finest level therefore never changes.
    """
    if len(values) % dims:
        raise ConfigError(f"schedule {' '.join(values)} does not have {dims} values per level")
    rows = [[float(v) for v in values[i:i + dims]] for i in range(0, len(values), dims)]
    while len(rows) < levels:
        rows.insert(0, [2.0 * v for v in rows[0]])
    rows = rows[len(rows) - levels:]
    return [_elastix_value(int(v) if v.is_integer() else v) for row in rows for v in row]


def with_overrides(
    pmap: Mapping[str, Sequence[str]],
    *,
    iterations: int | None = None,
    resolutions: int | None = None,
    grid_spacing: float | None = None,
    spatial_samples: int | None = None,
    samples: int | None = None,
    seed: int | None = None,
    threads: int | None = None,
    **elastix_values: Any,
) -> ParameterMap:
    """Return a copy of ``pmap`` with the pipeline's settings applied.

    ``None`` leaves a value as it is, so a config can pass every option.

    - ``iterations``: ``MaximumNumberOfIterations`` (every resolution).
    - ``resolutions``: ``NumberOfResolutions``; an ``ImagePyramidSchedule`` or
      ``GridSpacingSchedule`` present in the map is cut to the finest levels
      or extended with coarser ones (factors doubling), see
      :func:`_resize_schedule`.
    - ``grid_spacing``: ``FinalGridSpacingInVoxels`` (B-spline control-point
      spacing at the finest level, same in every dimension).
    - ``spatial_samples`` (alias ``samples``): ``NumberOfSpatialSamples``.
    - ``seed``: ``RandomSeed`` of the random sampler (0 <= seed < 2**32).
    - ``threads``: thread count handed to elastix by :func:`register`.
    - any other keyword spelled like an elastix parameter (leading capital
      letter) is set verbatim; a scalar becomes one value, a sequence several.
    """
    out: ParameterMap = {key: list(values) for key, values in pmap.items()}
    if samples is not None and spatial_samples is not None and samples != spatial_samples:
        raise ConfigError(f"elastix overrides samples={samples!r} and spatial_samples={spatial_samples!r} disagree")
    spatial_samples = spatial_samples if spatial_samples is not None else samples
    dims = _dimension(out)
    if iterations is not None:
        out["MaximumNumberOfIterations"] = [str(_positive_int("iterations", iterations))]
    if resolutions is not None:
        levels = _positive_int("resolutions", resolutions)
        out["NumberOfResolutions"] = [str(levels)]
        for key in ("ImagePyramidSchedule", "GridSpacingSchedule"):
            if key in out:
                out[key] = _resize_schedule(out[key], dims, levels)
    if grid_spacing is not None:
        if isinstance(grid_spacing, bool) or not isinstance(grid_spacing, (int, float, np.number)) \
                or not grid_spacing > 0 or not math.isfinite(grid_spacing):
            raise ConfigError(f"elastix override grid_spacing must be a positive number, got {grid_spacing!r}")
        out["FinalGridSpacingInVoxels"] = [_elastix_value(grid_spacing)] * dims
    if spatial_samples is not None:
        out["NumberOfSpatialSamples"] = [str(_positive_int("spatial_samples", spatial_samples))]
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
            raise ConfigError(f"elastix override seed must be an integer in [0, 2**32), got {seed!r}")
        out["RandomSeed"] = [str(int(seed))]
    if threads is not None:
        out[THREADS_KEY] = [str(_positive_int("threads", threads))]
    for key, value in elastix_values.items():
        if value is None:
            continue
        if not key[:1].isupper():
            raise ConfigError(
                f"unknown elastix override {key!r}: use iterations, resolutions, grid_spacing, "
                "spatial_samples, seed, threads, or an elastix parameter name")
        values = value if isinstance(value, (list, tuple, np.ndarray)) else [value]
        out[key] = [_elastix_value(v) for v in values]
    return out


# ------------------------------------------------------------------ itk glue
def _itk():
    """Import itk on first use (its compiled modules take ~15 s to load)."""
    import itk

    return itk


def _check_image(array: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array, got shape {array.shape}")
    if min(array.shape) < 4:
        raise ValueError(f"{what} is too small to register: shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} contains NaN or infinite values")
    return np.ascontiguousarray(array, dtype=np.float32)


def _check_mask(mask: np.ndarray | None, shape: tuple[int, ...], what: str) -> np.ndarray | None:
    """A registration mask as the uint8 0/1 array elastix takes, or None."""
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.shape != tuple(shape):
        raise ValueError(f"{what} has shape {mask.shape} but its image has shape {tuple(shape)}; "
                         "give a mask on the image's own grid")
    if mask.dtype != np.bool_:
        if not np.issubdtype(mask.dtype, np.integer) or not np.isin(mask, (0, 1)).all():
            raise ValueError(f"{what} must be boolean (or 0/1 integers), got dtype {mask.dtype}")
    if not mask.any():
        raise ValueError(f"{what} is empty: elastix would find no samples in it")
    return np.ascontiguousarray(mask, dtype=np.uint8)


def _check_spacing(spacing: Spacing, what: str) -> Spacing:
    if spacing is None:
        return None
    values = tuple(float(v) for v in np.asarray(spacing, dtype=np.float64).ravel())
    if len(values) != 2 or not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"{what} must be two positive finite numbers (row, col) in mm or None, got {spacing!r}")
    return values


def _to_itk(array: np.ndarray, spacing: Spacing):
    image = _itk().image_from_array(array)
    if spacing is not None:
        image.SetSpacing((spacing[1], spacing[0]))  # itk is (x, y) = (col, row)
    return image


def _parameter_object(maps: Iterable[Mapping[str, Sequence[str]]]):
    parameter_object = _itk().ParameterObject.New()
    for pmap in maps:
        parameter_object.AddParameterMap({key: tuple(values) for key, values in pmap.items()})
    return parameter_object


def _as_maps(transform) -> TransformMaps:
    """Normalise a transform given as one map, several maps, or an itk ParameterObject."""
    if isinstance(transform, Mapping):
        return (dict(transform),)
    if hasattr(transform, "GetNumberOfParameterMaps"):
        return tuple({key: list(values) for key, values in dict(transform.GetParameterMap(i)).items()}
                     for i in range(transform.GetNumberOfParameterMaps()))
    maps = tuple(dict(m) for m in transform)
    if not maps:
        raise ValueError("a transform needs at least one parameter map")
    return maps


def _prepare_log_dir(log_dir: str | Path | None) -> Path | None:
    if log_dir is None:
        return None
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    return log_dir


def _configure_logging(process, log_dir: Path | None, log_name: str) -> None:
    """elastix messages go to ``log_dir/log_name`` or nowhere, never to the console."""
    process.SetLogToConsole(False)
    if log_dir is None:
        process.SetLogToFile(False)
        return
    process.SetOutputDirectory(str(log_dir))
    process.SetLogFileName(log_name)
    process.SetLogToFile(True)


# --------------------------------------------------------------- registration
@dataclasses.dataclass
class RegistrationResult:
    """Outcome of one elastix registration.

    ``warped``: the moving image resampled on the fixed image's grid
    (float32). ``transform``: the elastix transform parameter maps (fixed
    point -> moving point), usable with :func:`transform_image`,
    :func:`transform_labels` and :func:`similarity_parameters`.
    ``seconds``: wall-clock time of the registration itself.
    """

    warped: np.ndarray
    transform: TransformMaps
    seconds: float


def register(
    fixed: np.ndarray,
    moving: np.ndarray,
    parameter_map: Mapping[str, Sequence[str]] | Sequence[Mapping[str, Sequence[str]]],
    fixed_spacing: Spacing = None,
    moving_spacing: Spacing = None,
    log_dir: str | Path | None = None,
    threads: int | None = None,
    fixed_mask: np.ndarray | None = None,
    moving_mask: np.ndarray | None = None,
) -> RegistrationResult:
    """Register ``moving`` onto ``fixed`` with elastix.

    ``parameter_map`` is one map or a sequence of maps run one after the
    other (elastix's multi-stage registration). ``threads`` overrides the
    map's thread setting (see :func:`with_overrides`); neither means elastix's
    default (all cores). With ``log_dir`` the elastix log and the final
    transform parameter file are written there (``elastix.log``,
    ``TransformParameters.*.txt``); without it elastix writes nothing.

    ``fixed_mask`` and ``moving_mask`` (boolean, or 0/1 integers, shaped
    like their image) restrict the metric: elastix draws its samples inside
    the fixed mask only and drops those that map outside the moving mask.
    Set ``(ErodeMask "false")`` in the map to keep elastix from eroding thin
    masks away at coarse pyramid levels.
    """
    fixed = _check_image(fixed, "fixed image")
    moving = _check_image(moving, "moving image")
    fixed_mask = _check_mask(fixed_mask, fixed.shape, "fixed_mask")
    moving_mask = _check_mask(moving_mask, moving.shape, "moving_mask")
    fixed_spacing = _check_spacing(fixed_spacing, "fixed_spacing")
    moving_spacing = _check_spacing(moving_spacing, "moving_spacing")
    maps = [parameter_map] if isinstance(parameter_map, Mapping) else list(parameter_map)
    threads = _thread_count(maps, threads)
    # The warped image comes from transformix below: asking elastix for it
    # would also make elastix write a result image into log_dir.
    elastix_maps = [{**{k: v for k, v in m.items() if k != THREADS_KEY}, "WriteResultImage": ["false"]}
                    for m in maps]
    log_dir = _prepare_log_dir(log_dir)

    itk = _itk()
    start = time.perf_counter()
    with _itk_threads(itk, threads):
        method = itk.ElastixRegistrationMethod.New(_to_itk(fixed, fixed_spacing), _to_itk(moving, moving_spacing))
        method.SetParameterObject(_parameter_object(elastix_maps))
        if fixed_mask is not None:
            method.SetFixedMask(_to_itk(fixed_mask, fixed_spacing))
        if moving_mask is not None:
            method.SetMovingMask(_to_itk(moving_mask, moving_spacing))
        _configure_logging(method, log_dir, "elastix.log")
        method.Update()
    transform = _as_maps(method.GetTransformParameterObject())
    seconds = time.perf_counter() - start
    order = int(transform[-1].get("FinalBSplineInterpolationOrder", ["3"])[0])
    warped = transform_image(moving, transform, moving_spacing, order=order)
    return RegistrationResult(warped=warped, transform=transform, seconds=seconds)


@contextlib.contextmanager
def _itk_threads(itk, threads: int | None):
    """Run elastix with ``threads`` threads through ITK's global default, restored afterwards.

    itk-elastix 0.25 crashes (segmentation fault) in multi-metric B-spline
    registrations when ``ElastixRegistrationMethod.SetNumberOfThreads(n)`` is
    called with n >= 2; ITK's global default thread count, read by every
    filter created while it is set, gives the same thread count without the
    crash (tests/kernel/test_elastix.py runs 2 threads in a subprocess).
    """
    if threads is None:
        yield
        return
    threader = itk.MultiThreaderBase
    previous = threader.GetGlobalDefaultNumberOfThreads()
    threader.SetGlobalDefaultNumberOfThreads(threads)
    try:
        yield
    finally:
        threader.SetGlobalDefaultNumberOfThreads(previous)


def _thread_count(maps: Sequence[Mapping[str, Sequence[str]]], threads: int | None) -> int | None:
    if threads is not None:
        return _positive_int("threads", threads)
    for pmap in maps:
        if THREADS_KEY in pmap:
            return _positive_int(THREADS_KEY, int(pmap[THREADS_KEY][0]))
    return None


def _run_transformix(image: np.ndarray, maps: TransformMaps, spacing: Spacing,
                     log_dir: Path | None = None) -> np.ndarray:
    itk = _itk()
    transformix = itk.TransformixFilter.New(_to_itk(image, spacing))
    transformix.SetTransformParameterObject(_parameter_object(maps))
    _configure_logging(transformix, log_dir, "transformix.log")
    transformix.Update()
    return np.array(transformix.GetOutput(), dtype=np.float32, copy=True)


def _with_final_order(transform, order: int) -> TransformMaps:
    if not 0 <= order <= 5:
        raise ValueError(f"B-spline interpolation order must be in 0..5, got {order}")
    return tuple({**m, "FinalBSplineInterpolationOrder": [str(order)]} for m in _as_maps(transform))


def transform_image(image: np.ndarray, transform, spacing: Spacing = None, order: int = 3) -> np.ndarray:
    """Resample ``image`` (in the moving image's frame) with a found transform.

    The result lies on the fixed image's grid, float32; positions that map
    outside the image get ``DefaultPixelValue`` (0). ``order`` is the
    B-spline interpolation order (3 cubic, 1 linear, 0 nearest neighbour);
    cubic interpolation can overshoot the input range slightly.
    """
    image = _check_image(image, "image")
    return _run_transformix(image, _with_final_order(transform, order), _check_spacing(spacing, "spacing"))


def transform_labels(labels: np.ndarray, transform, spacing: Spacing = None) -> np.ndarray:
    """Resample a label map with nearest-neighbour interpolation (uint8).

    Every output value is an input label or the background 0 (for positions
    that map outside the image), never a blend of labels.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D array, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != np.bool_:
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError("labels must lie in 0..255")
    maps = tuple({**m, "DefaultPixelValue": ["0"]} for m in _with_final_order(transform, 0))
    warped = _run_transformix(labels.astype(np.float32), maps, _check_spacing(spacing, "spacing"))
    out = np.rint(warped).astype(np.uint8)
    unexpected = set(np.unique(out).tolist()) - set(np.unique(labels).tolist()) - {0}
    if unexpected:  # order-0 B-spline resampling copies values; anything else is a bug
        raise RuntimeError(f"nearest-neighbour resampling produced labels {sorted(unexpected)} not in the input")
    return out


def similarity_parameters(transform) -> dict:
    """Describe an elastix similarity transform in array terms.

    The transform maps a fixed-image point p (row, col) to the moving image:
    ``T(p) = scale * R (p - center) + center + translation``, equivalently
    ``matrix @ p + offset``. Units are those of the registration: mm when
    spacings were given, pixels otherwise. ``angle_deg`` is elastix's angle,
    which turns the +x (column) axis towards +y (row): on screen, with rows
    running down, a positive angle is clockwise.

    Returns ``scale``, ``angle_deg``, ``translation`` (row, col),
    ``center`` (row, col), ``matrix`` (2x2, row/col) and ``offset`` (row, col).
    """
    maps = _as_maps(transform)
    similarity = [m for m in maps if m.get("Transform", [""])[0] == "SimilarityTransform"]
    if len(maps) != 1 or not similarity:
        kinds = [m.get("Transform", ["?"])[0] for m in maps]
        raise ValueError(f"expected a single SimilarityTransform, got {kinds}")
    pmap = similarity[0]
    if _dimension(pmap) != 2:
        raise ValueError("only 2-D similarity transforms are supported")
    scale, angle, tx, ty = (float(v) for v in pmap["TransformParameters"])
    cx, cy = (float(v) for v in pmap.get("CenterOfRotationPoint", ["0", "0"]))
    cos, sin = math.cos(angle), math.sin(angle)
    # elastix rotates (x, y) by [[cos, -sin], [sin, cos]]; in (row, col) = (y, x) order:
    matrix = scale * np.array([[cos, sin], [-sin, cos]])
    center = np.array([cy, cx])
    translation = np.array([ty, tx])
    offset = center + translation - matrix @ center
    return {
        "scale": scale,
        "angle_deg": math.degrees(angle),
        "translation": (float(ty), float(tx)),
        "center": (float(cy), float(cx)),
        "matrix": matrix,
        "offset": offset,
    }
