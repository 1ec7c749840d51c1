"""BraTS-Reg 2022 (Baheti et al., arXiv:2112.06979), read as published, and the writers its stand-in uses.

A copy holds case folders ``BraTSReg_NNN/`` (at the raw directory's top or one folder down, as the release's
``BraTSReg_Training_Data_v3/`` and ``BraTSReg_Validation_Data/`` unpack), each with:

* ``BraTSReg_NNN_00_0000_<mod>.nii.gz``: the baseline (pre-operative) scan, ``<mod>`` in t1, t1ce, t2, flair;
* ``BraTSReg_NNN_01_<DDDD>_<mod>.nii.gz``: the follow-up, ``DDDD`` its time point;
* ``BraTSReg_NNN_01_<DDDD>_landmarks.csv`` and, for training cases only, ``BraTSReg_NNN_00_0000_landmarks.csv``:
  header ``Landmark,X,Y,Z``, one row per landmark, its id and a physical point in ITK's LPS millimetres.

Volumes are 240 x 240 x 155 at 1 mm, int16. A landmark's voxel index comes from the image's own geometry
(:meth:`medrepro.data.io.nifti.Geometry.physical_to_index`), never a fixed offset: under BraTS' affine (LPS origin
(0, -239, 0), identity direction) it is (X, Y + 239, Z), the index independent evaluation codes use, kept
sub-voxel.

Every problem is a :class:`DataError` naming the file: a missing modality or landmark file, a corrupt or non-3-D
volume, follow-up and baseline grids that differ, a landmark file with another header, a missing, non-integer or
repeated id, a non-numeric coordinate, a landmark outside its volume, baseline and follow-up ids that differ.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medrepro.data.atomic import write_text
from medrepro.data.io.nifti import Geometry, read_header, read_volume
from medrepro.errors import DataError, name_list

MODALITIES = ("t1", "t1ce", "t2", "flair")
LANDMARK_HEADER = ("Landmark", "X", "Y", "Z")
CASE_PATTERN = re.compile(r"^BraTSReg_(\d{3})$")
_SCAN = re.compile(r"^BraTSReg_(\d{3})_(00|01)_(\d{4})_([a-z0-9]+)\.(nii\.gz|nii|csv)$")
#: Release folders the case folders may sit in, by split.
TRAINING_DIR = "BraTSReg_Training_Data_v3"
VALIDATION_DIR = "BraTSReg_Validation_Data"
NATIVE_SHAPE = (155, 240, 240)  # (z, y, x)
#: BraTS' NIfTI affine as ITK reads it (LPS): voxel (i, j, k) -> (i, j - 239, k) mm.
BRATS_GEOMETRY = Geometry(spacing=(1.0, 1.0, 1.0), origin=(0.0, -239.0, 0.0))


@dataclass(frozen=True)
class Case:
    """One case's files: scans by modality for the baseline and the follow-up, and the landmark files."""

    name: str
    folder: Path
    baseline: dict
    followup: dict
    followup_time: str
    baseline_landmarks: Path | None
    followup_landmarks: Path

    @property
    def has_baseline_landmarks(self) -> bool:
        return self.baseline_landmarks is not None


def case_folders(raw_root: str | Path) -> list[Path]:
    """Every ``BraTSReg_NNN`` folder at the top of ``raw_root`` or one folder down, sorted by name."""
    raw_root = Path(raw_root)
    found = [p for p in raw_root.iterdir() if p.is_dir() and CASE_PATTERN.match(p.name)]
    for sub in sorted(p for p in raw_root.iterdir() if p.is_dir() and not CASE_PATTERN.match(p.name)):
        found += [p for p in sub.iterdir() if p.is_dir() and CASE_PATTERN.match(p.name)]
    names = [p.name for p in found]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(raw_root, f"case folder(s) {name_list(repeated)} found twice; keep one copy of each")
    return sorted(found, key=lambda p: p.name)


def index_case(folder: str | Path, modalities=MODALITIES) -> Case:
    """A case folder's files, checked for completeness (every modality of both scans, the follow-up's landmarks)."""
    folder = Path(folder)
    number = CASE_PATTERN.match(folder.name).group(1)
    scans: dict = {"00": {}, "01": {}}
    landmarks: dict = {}
    times: dict = {"00": set(), "01": set()}
    for path in sorted(folder.iterdir()):
        match = _SCAN.match(path.name)
        if not match or match.group(1) != number:
            continue
        _, timepoint, time, kind, _ = match.groups()
        times[timepoint].add(time)
        (landmarks if kind == "landmarks" else scans[timepoint])[timepoint if kind == "landmarks" else kind] = path
    if len(times["01"]) > 1 or len(times["00"] - {"0000"}):
        raise DataError(folder, f"expected one baseline (00_0000) and one follow-up (01_DDDD) time point, found "
                                f"{name_list(sorted(times['00']) + sorted(times['01']))}")
    if not times["01"]:
        raise DataError(folder, f"no follow-up scan (BraTSReg_{number}_01_<DDDD>_<mod>.nii.gz) in the case folder")
    time = next(iter(times["01"]))
    for timepoint, label in (("00", "baseline"), ("01", "follow-up")):
        missing = [m for m in modalities if m not in scans[timepoint]]
        if missing:
            stem = f"BraTSReg_{number}_{timepoint}_{'0000' if timepoint == '00' else time}"
            raise DataError(folder / f"{stem}_{missing[0]}.nii.gz",
                            f"missing {label} modality {name_list(missing)}: every case needs "
                            f"{', '.join(modalities)} for both scans")
    if "01" not in landmarks:
        raise DataError(folder / f"BraTSReg_{number}_01_{time}_landmarks.csv",
                        "missing: every case has the follow-up's landmarks")
    return Case(name=folder.name, folder=folder, baseline={m: scans["00"][m] for m in modalities},
                followup={m: scans["01"][m] for m in modalities}, followup_time=time,
                baseline_landmarks=landmarks.get("00"), followup_landmarks=landmarks["01"])


def index_cases(raw_root: str | Path, modalities=MODALITIES) -> list[Case]:
    cases = [index_case(folder, modalities) for folder in case_folders(raw_root)]
    if not cases:
        raise DataError(raw_root, "holds no BraTSReg_NNN case folder")
    return cases


def read_landmarks(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A landmark CSV: (ids (n,), physical points (n, 3) x, y, z in mm), ids ascending."""
    path = Path(path)
    try:
        rows = list(csv.reader(io.StringIO(path.read_text())))
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(path, f"unreadable landmark file ({error})") from None
    rows = [[cell.strip() for cell in row] for row in rows if any(cell.strip() for cell in row)]
    if not rows or tuple(rows[0]) != LANDMARK_HEADER:
        found = ",".join(rows[0]) if rows else "an empty file"
        raise DataError(path, f"header must be {','.join(LANDMARK_HEADER)}, found {found}")
    ids, points = [], []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 4:
            raise DataError(path, f"line {line} has {len(row)} fields, expected 4 ({','.join(LANDMARK_HEADER)})")
        try:
            ids.append(int(row[0]))
        except ValueError:
            raise DataError(path, f"line {line}: landmark id {row[0]!r} is not a whole number") from None
        try:
            points.append([float(value) for value in row[1:]])
        except ValueError:
            raise DataError(path, f"line {line}: coordinates {','.join(row[1:])} are not numbers") from None
    if not ids:
        raise DataError(path, "lists no landmark")
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise DataError(path, f"landmark id(s) {name_list(repeated)} appear more than once")
    points = np.asarray(points, dtype=float)
    if not np.all(np.isfinite(points)):
        raise DataError(path, "holds a non-finite coordinate")
    order = np.argsort(ids)
    return np.asarray(ids)[order], points[order]


def write_landmarks(path: str | Path, ids, points: np.ndarray) -> None:
    """Landmarks as BraTS-Reg writes them: ``Landmark,X,Y,Z``, physical mm with two decimals."""
    lines = [",".join(LANDMARK_HEADER)]
    lines += [f"{int(i)},{_num(x)},{_num(y)},{_num(z)}" for i, (x, y, z) in zip(ids, np.asarray(points))]
    write_text(path, "\n".join(lines) + "\n")


def _num(value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def landmarks_in_voxels(path: str | Path, geometry: Geometry, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """A landmark file's ids and continuous voxel indices (x, y, z) in a volume of ``shape`` (z, y, x) and
    ``geometry``; a landmark outside the volume is an error."""
    ids, points = read_landmarks(path)
    index = geometry.physical_to_index(points)
    upper = np.asarray(shape[::-1], dtype=float) - 0.5
    outside = np.any((index < -0.5) | (index > upper), axis=1)
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise DataError(path, f"landmark {int(ids[first])} at {_rounded(points[first])} mm lies outside the "
                              f"volume (voxel {_rounded(index[first])}, size {list(shape[::-1])} x, y, z)")
    return ids, index


def check_matching_ids(baseline_path, baseline_ids, followup_path, followup_ids) -> None:
    only_base = sorted(set(baseline_ids) - set(followup_ids))
    only_follow = sorted(set(followup_ids) - set(baseline_ids))
    if only_base or only_follow:
        parts = []
        if only_base:
            parts.append(f"id(s) {name_list(only_base)} only in the baseline's")
        if only_follow:
            parts.append(f"id(s) {name_list(only_follow)} only in the follow-up's ({Path(followup_path).name})")
        raise DataError(baseline_path, "baseline and follow-up landmarks do not match: " + "; ".join(parts))


def scan_geometry(case: Case, timepoint: str) -> tuple[tuple, Geometry]:
    """Shape (z, y, x) and geometry shared by every modality of one scan; a modality on another grid is an error."""
    files = case.baseline if timepoint == "baseline" else case.followup
    first_shape = first_geometry = first_path = None
    for modality, path in files.items():
        reader = read_header(path)
        if reader.GetDimension() != 3:
            raise DataError(path, f"expected a 3-D volume, got {reader.GetDimension()}-D")
        shape = tuple(reader.GetSize()[::-1])
        geometry = Geometry(tuple(reader.GetSpacing()), tuple(reader.GetOrigin()), tuple(reader.GetDirection()))
        if first_shape is None:
            first_shape, first_geometry, first_path = shape, geometry, path
        elif not geometry.same_grid(first_geometry, shape, first_shape):
            raise DataError(path, _grid_problem(shape, geometry, first_shape, first_geometry, first_path))
    return first_shape, first_geometry


def check_pair_grids(case: Case) -> tuple[tuple, Geometry]:
    """The baseline's and the follow-up's grid; they must agree (size, spacing, origin, direction)."""
    shape, geometry = scan_geometry(case, "baseline")
    follow_shape, follow_geometry = scan_geometry(case, "followup")
    if not follow_geometry.same_grid(geometry, follow_shape, shape):
        path = next(iter(case.followup.values()))
        raise DataError(path, _grid_problem(follow_shape, follow_geometry, shape, geometry,
                                            next(iter(case.baseline.values()))))
    return shape, geometry


def _grid_problem(shape, geometry, other_shape, other_geometry, other_path) -> str:
    return (f"grid differs from its pair's {Path(other_path).name}: size {list(shape[::-1])} vs "
            f"{list(other_shape[::-1])}, spacing {_rounded(geometry.spacing)} vs {_rounded(other_geometry.spacing)}, "
            f"origin {_rounded(geometry.origin)} vs {_rounded(other_geometry.origin)}; both scans of a case must "
            "share one grid")


def _rounded(values) -> list:
    return [round(float(v), 3) for v in values]


def read_scan(case: Case, timepoint: str, modalities=MODALITIES) -> tuple[np.ndarray, Geometry]:
    """The scan's modalities stacked (C, z, y, x) float32, and its geometry."""
    files = case.baseline if timepoint == "baseline" else case.followup
    volumes, geometry = [], None
    for modality in modalities:
        array, geometry = read_volume(files[modality])
        volumes.append(array)
    return np.stack(volumes), geometry
