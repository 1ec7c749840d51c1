"""A synthetic BraTS-Reg, written in its native layout from the study's 3-D brain phantom (:mod:`.phantom`).

Each case is one patient: a skull-stripped brain of its own shape with folded cortex, white matter, ventricles,
vessels and a glioma (enhancing rim, necrotic core, oedema) pushing the tissue around it in the baseline, and the
follow-up after resection (a cavity, the mass effect partly relaxed, a smooth non-rigid change, intensities
changed near the lesion). Landmarks sit at vessel bifurcations, ventricle horns, cortical and midline points;
their follow-up positions follow from the true deformation. What makes the challenge hard is there: tissue that
exists in one scan only, and the largest displacements next to it.

What :func:`generate_brats_reg` writes, as the release has it (:mod:`.readers.brats_reg`):

* ``BraTSReg_Training_Data_v3/BraTSReg_NNN/`` for the training cases and ``BraTSReg_Validation_Data/`` for the
  validation ones, numbered on from the training cases as the release does;
* per case the four modalities of both scans as int16 ``.nii.gz`` (BraTS' geometry generalised to the grid:
  identity direction, LPS origin (0, -(n_y - 1) * spacing, 0), so at 1 mm it is BraTS' own), and the landmark
  CSVs ``Landmark,X,Y,Z`` in physical mm, two decimals; validation cases without the baseline's, as released;
* :data:`TRUTH_FILE`, what no reader may use: every landmark's kind and both positions, validation cases
  included, so that a user can score a submission on the stand-in;
* ``MANIFEST.sha256`` over everything above.

Each case's draws come from ``(seed, case number)``, so the bytes do not depend on ``workers``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from medrepro.data.atomic import write_csv
from medrepro.data.io.nifti import Geometry, write_volume
from medrepro.errors import ConfigError, DataError
from medrepro.pipeline.parallel import ordered_map
from medrepro.provenance.pinning import MANIFEST_FILE, write_manifest
from medrepro.studies.brain import phantom
from medrepro.studies.brain.readers import brats_reg

log = logging.getLogger(__name__)

TRUTH_FILE = "synthetic_truth.csv"
TRUTH_COLUMNS = ["case", "split", "landmark", "kind", "baseline_x", "baseline_y", "baseline_z",
                 "followup_x", "followup_y", "followup_z"]
INTENSITY_MAX = 32767


def brats_like_geometry(shape: tuple, voxel_mm: float) -> Geometry:
    """BraTS' grid convention at any spacing: at 1 mm and 240 rows it is (0, -239, 0)."""
    return Geometry(spacing=(voxel_mm,) * 3, origin=(0.0, -(shape[1] - 1) * voxel_mm, 0.0))


def generate_brats_reg(raw_root: str | Path, *, n_training: int, n_validation: int, seed: int,
                       voxel_mm: float = 1.0, landmarks: tuple[int, int] = (6, 50), workers: int = 1,
                       settings: dict | None = None) -> pd.DataFrame:
    """Write a synthetic BraTS-Reg into the empty directory ``raw_root``; the truth table.

    ``voxel_mm`` sets the grid (1 mm: the release's 240 x 240 x 155); ``landmarks`` the range of landmarks per case;
    ``settings`` any further :class:`.phantom.PhantomSettings` field. Write through
    :func:`medrepro.data.atomic.atomic_dir` to publish it whole.
    """
    if n_training < 1 or n_validation < 0:
        raise ConfigError(f"synthetic BraTS-Reg needs at least one training case, got {n_training} training and "
                          f"{n_validation} validation")
    raw_root = Path(raw_root)
    if raw_root.exists() and any(raw_root.iterdir()):
        raise DataError(raw_root, "is not empty; the stand-in is written into an empty folder")
    phantom_settings = phantom.PhantomSettings(voxel_mm=float(voxel_mm), landmarks_min=int(landmarks[0]),
                                               landmarks_max=int(landmarks[1]), **(settings or {}))
    tasks = [(raw_root, int(seed), number, number > n_training, phantom_settings)
             for number in range(1, n_training + n_validation + 1)]
    rows = ordered_map(_write_case, tasks, workers, desc="synthetic BraTS-Reg cases")
    truth = pd.DataFrame([row for case_rows in rows for row in case_rows], columns=TRUTH_COLUMNS)
    write_csv(raw_root / TRUTH_FILE, truth, float_format="%.4f")
    write_manifest(raw_root, raw_root / MANIFEST_FILE)
    log.info("wrote a synthetic BraTS-Reg of %d training and %d validation cases (%d landmarks) to %s",
             n_training, n_validation, len(truth), raw_root)
    return truth


def _write_case(task) -> list[list]:
    raw_root, seed, number, validation, settings = task
    pair = phantom.make_pair(np.random.default_rng([seed, number]), settings)
    rng = np.random.default_rng([seed, number, 1])
    name = f"BraTSReg_{number:03d}"
    folder = raw_root / (brats_reg.VALIDATION_DIR if validation else brats_reg.TRAINING_DIR) / name
    folder.mkdir(parents=True, exist_ok=True)
    time = f"{int(rng.integers(60, 1500)):04d}"
    geometry = brats_like_geometry(settings.shape, settings.voxel_mm)
    stems = {"baseline": f"{name}_00_0000", "followup": f"{name}_01_{time}"}
    for scan, volumes in (("baseline", pair.baseline), ("followup", pair.followup)):
        for modality in brats_reg.MODALITIES:
            stored = np.clip(np.rint(volumes[modality]), 0, INTENSITY_MAX).astype(np.int16)
            write_volume(folder / f"{stems[scan]}_{modality}.nii.gz", stored, geometry)
    ids = np.arange(1, len(pair.baseline_landmarks) + 1)
    base_mm = geometry.index_to_physical(pair.baseline_landmarks)
    follow_mm = geometry.index_to_physical(pair.followup_landmarks)
    brats_reg.write_landmarks(folder / f"{stems['followup']}_landmarks.csv", ids, follow_mm)
    if not validation:
        brats_reg.write_landmarks(folder / f"{stems['baseline']}_landmarks.csv", ids, base_mm)
    split = "validation" if validation else "training"
    return [[name, split, int(i), kind, *b, *f]
            for i, kind, b, f in zip(ids, pair.landmark_kinds, base_mm.round(2), follow_mm.round(2))]
