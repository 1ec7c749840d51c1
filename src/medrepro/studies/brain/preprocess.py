"""Cases at the working resolution: intensities normalised per modality, volumes resampled, landmarks carried.

Per case and scan, each modality is scaled so that its brain voxels' 1st and 99th percentiles go to 0 and 1
(background, exactly 0 in skull-stripped BraTS volumes, stays 0), then smoothed against aliasing (a Gaussian of
half the spacing change) and resampled linearly onto a grid of ``voxel_mm`` whose voxel edges meet the native
grid's at its first corner. The volume is then zero-padded at its far ends to a multiple of
:data:`SIZE_MULTIPLE` voxels per axis, so that every U-Net's pooling divides it; padding at the far end leaves
every voxel index, and so the geometry, as it was. Landmarks go through physical space: their file's mm to the
working grid's continuous index, sub-voxel.

Each case is written as one ``.npz`` (:func:`save_case`) with the moving (follow-up) and fixed (baseline) volumes
(C, z, y, x), the landmark ids, the follow-up's landmarks and, for training cases, the baseline's (NaN otherwise)
in working voxels, and the working grid (spacing, origin, direction, the unpadded shape); ``cases.csv`` lists the
cases with their split.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medrepro.data.atomic import atomic_path
from medrepro.data.io.nifti import Geometry
from medrepro.errors import DataError
from medrepro.studies.brain.readers import brats_reg

log = logging.getLogger(__name__)

SIZE_MULTIPLE = 8
SPLITS = ("train", "test", "validation")


@dataclass
class PreparedCase:
    name: str
    split: str
    moving: np.ndarray            # (C, z, y, x) float32, the follow-up
    fixed: np.ndarray             # (C, z, y, x) float32, the baseline
    ids: np.ndarray               # (n,) landmark ids
    moving_landmarks: np.ndarray  # (n, 3) working voxels (x, y, z)
    fixed_landmarks: np.ndarray   # (n, 3), NaN for a case without the baseline's landmarks
    geometry: Geometry            # the working grid
    shape: tuple                  # unpadded (z, y, x)

    @property
    def has_fixed_landmarks(self) -> bool:
        return bool(np.isfinite(self.fixed_landmarks).all())


def normalise(volume: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Brain voxels (non-zero) scaled so their ``low`` and ``high`` percentiles go to 0 and 1; background 0."""
    brain = volume != 0
    if not brain.any():
        return np.zeros_like(volume, dtype=np.float32)
    lo, hi = np.percentile(volume[brain], [low, high])
    scaled = (volume - lo) / max(hi - lo, 1e-6)
    return np.where(brain, np.clip(scaled, 0.0, None), 0.0).astype(np.float32)


def working_grid(shape: tuple, geometry: Geometry, voxel_mm: float) -> tuple[tuple, Geometry]:
    """The (z, y, x) shape and geometry of ``voxel_mm`` voxels covering the native grid from its first corner."""
    native = np.asarray(geometry.spacing)
    sizes_xyz = np.maximum(1, np.round(np.asarray(shape[::-1]) * native / voxel_mm)).astype(int)
    shift = (voxel_mm - native) / 2.0  # first voxel centre moves by half the spacing change
    direction = np.asarray(geometry.direction).reshape(3, 3)
    origin = np.asarray(geometry.origin) + direction @ shift
    return tuple(int(n) for n in sizes_xyz[::-1]), Geometry((float(voxel_mm),) * 3, tuple(map(float, origin)),
                                                            geometry.direction)


def resample(volume: np.ndarray, geometry: Geometry, shape: tuple, target: Geometry) -> np.ndarray:
    """``volume`` on ``geometry`` resampled linearly onto ``shape`` x ``target``, smoothed first when coarser."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(volume.astype(np.float32, copy=False))
    geometry.apply_to(image)
    sigma = [max(0.0, (t - s) / 2.0) for t, s in zip(target.spacing, geometry.spacing)]
    if max(sigma) > 0:
        image = sitk.SmoothingRecursiveGaussian(image, [max(s, 1e-3) for s in sigma])
    reference = sitk.Image([int(n) for n in shape[::-1]], sitk.sitkFloat32)
    target.apply_to(reference)
    out = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def padded_shape(shape: tuple, multiple: int = SIZE_MULTIPLE) -> tuple:
    return tuple(int(-(-n // multiple) * multiple) for n in shape)


def pad_to(volume: np.ndarray, shape: tuple) -> np.ndarray:
    pad = [(0, 0)] * (volume.ndim - 3) + [(0, t - n) for t, n in zip(shape, volume.shape[-3:])]
    return np.pad(volume, pad)


def prepare_case(case: brats_reg.Case, split: str, modalities, voxel_mm: float) -> PreparedCase:
    """One case read, checked, normalised, resampled and padded, with its landmarks in working voxels."""
    native_shape, native_geometry = brats_reg.check_pair_grids(case)
    follow_ids, follow_points = _landmarks(case.followup_landmarks, native_geometry, native_shape)
    base_points = np.full_like(follow_points, np.nan)
    if case.has_baseline_landmarks:
        base_ids, base_points = _landmarks(case.baseline_landmarks, native_geometry, native_shape)
        brats_reg.check_matching_ids(case.baseline_landmarks, base_ids, case.followup_landmarks, follow_ids)
    shape, geometry = working_grid(native_shape, native_geometry, voxel_mm)
    full = padded_shape(shape)
    scans = {}
    for timepoint in ("baseline", "followup"):
        stacked, _ = brats_reg.read_scan(case, timepoint, modalities)
        scans[timepoint] = pad_to(np.stack([resample(normalise(v), native_geometry, shape, geometry)
                                            for v in stacked]), full)
    return PreparedCase(name=case.name, split=split, moving=scans["followup"], fixed=scans["baseline"],
                        ids=follow_ids, moving_landmarks=geometry.physical_to_index(follow_points),
                        fixed_landmarks=(geometry.physical_to_index(base_points) if case.has_baseline_landmarks
                                         else base_points), geometry=geometry, shape=shape)


def _landmarks(path, geometry, shape) -> tuple[np.ndarray, np.ndarray]:
    """Ids and physical points of a landmark file, checked to lie inside the native volume (read once)."""
    ids, index = brats_reg.landmarks_in_voxels(path, geometry, shape)
    return ids, geometry.index_to_physical(index)


def split_cases(cases: list[brats_reg.Case], seed: int, test_fraction: float) -> dict[str, str]:
    """Case name -> split: training cases (with the baseline's landmarks) seeded into train and test, at least one
    of each; validation cases (without) kept apart for submission files."""
    training = sorted(c.name for c in cases if c.has_baseline_landmarks)
    if len(training) < 2:
        raise DataError(None, f"the data hold {len(training)} case(s) with baseline landmarks; the split needs at "
                              "least 2 (one to train on, one to test)")
    n_test = min(len(training) - 1, max(1, int(round(test_fraction * len(training)))))
    order = np.random.default_rng(seed).permutation(len(training))
    test = {training[i] for i in order[:n_test]}
    return {c.name: ("validation" if not c.has_baseline_landmarks else "test" if c.name in test else "train")
            for c in cases}


def save_case(path: str | Path, case: PreparedCase) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, moving=case.moving, fixed=case.fixed, ids=case.ids, moving_landmarks=case.moving_landmarks,
                 fixed_landmarks=case.fixed_landmarks, spacing=np.asarray(case.geometry.spacing),
                 origin=np.asarray(case.geometry.origin), direction=np.asarray(case.geometry.direction),
                 shape=np.asarray(case.shape), name=case.name, split=case.split)


def load_case(path: str | Path) -> PreparedCase:
    path = Path(path)
    try:
        with np.load(path) as data:
            return PreparedCase(
                name=str(data["name"]), split=str(data["split"]), moving=data["moving"], fixed=data["fixed"],
                ids=data["ids"], moving_landmarks=data["moving_landmarks"], fixed_landmarks=data["fixed_landmarks"],
                geometry=Geometry(tuple(data["spacing"].tolist()), tuple(data["origin"].tolist()),
                                  tuple(data["direction"].tolist())),
                shape=tuple(int(n) for n in data["shape"]))
    except (OSError, KeyError, ValueError) as error:
        raise DataError(path, f"not a prepared case file ({error}); rerun the brain_prepare rule") from None


def cases_table(cases: list[PreparedCase], files: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"case": [c.name for c in cases], "split": [c.split for c in cases],
                         "landmarks": [len(c.ids) for c in cases], "file": files})


def load_split(prepared_dir: str | Path, split: str) -> list[PreparedCase]:
    """Every prepared case of one split, in name order."""
    prepared_dir = Path(prepared_dir)
    table = pd.read_csv(prepared_dir / "cases.csv")
    return [load_case(prepared_dir / f) for f in table.loc[table["split"] == split, "file"]]
