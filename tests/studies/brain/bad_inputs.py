"""The brain registration study's bad inputs: BraTS-Reg's NIfTI scans and landmark CSVs. Run by
tests/workflow/test_bad_inputs.py with every other study's cases."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from support.bad_inputs import (INSTRUCTIONS_CHARS, MAX_MESSAGE_CHARS, Stock, StepRun, config_case, delete,
                                nothing_obtained, step_case)

DATASET = "BraTS-Reg"
PREPARED = "results/brain/prepared"
# A message names a file below the case's folder: raw/BraTS-Reg/BraTSReg_Training_Data_v3/BraTSReg_001/<file>.
PATH_CHARS = 200


def make_stock(raw: Path) -> None:
    """A small synthetic BraTS-Reg (three training cases and one validation case at 6 mm) in ``raw/BraTS-Reg``."""
    from medrepro.studies.brain.synthetic import generate_brats_reg

    generate_brats_reg(raw / DATASET, n_training=3, n_validation=1, seed=0, voxel_mm=6.0, landmarks=(6, 10))


def _case(raw: Path) -> Path:
    return raw / "BraTSReg_Training_Data_v3" / "BraTSReg_001"


def _file(raw: Path, pattern: str) -> Path:
    return sorted(_case(raw).glob(pattern))[0]


def prepare(damage: Callable[[Path], None]) -> Callable:
    """The preparation step (raw files -> cases at the working resolution) on a damaged copy of the stand-in."""

    def run(case: Path, stock: Stock) -> StepRun:
        raw = stock.copy_raw(DATASET, case)
        damage(raw)
        return StepRun("brain_prepare", "medrepro.studies.brain.steps:prepare", {"_0": str(case / PREPARED)},
                       {"raw_dir": str(raw), "modalities": ["t1ce", "flair"], "voxel_mm": 6.0,
                        "split": {"test_fraction": 0.4}, "seed": 0})

    return run


def obtain(damage: Callable[[Path], None]) -> Callable:
    """The obtain step (layout, then every file against its pin) on a user's copy of the stand-in, damaged."""

    def run(case: Path, stock: Stock) -> StepRun:
        raw = stock.copy_raw(DATASET, case, user_copy=True)
        damage(raw)
        return StepRun("brain_obtain", "medrepro.studies.brain.steps:obtain",
                       {"manifest": str(case / "results/brain/raw_manifest.sha256")},
                       {"source": "verify", "raw_dir": str(raw)})

    return run


def _no_cases(raw: Path) -> None:
    """The release's folders left out: the user placed nothing but the generator's files."""
    for folder in ("BraTSReg_Training_Data_v3", "BraTSReg_Validation_Data"):
        delete(folder)(raw)


def _rewrite(pattern: str, change: Callable) -> Callable[[Path], None]:
    """The scan matching ``pattern`` written again after ``change(array, geometry) -> (array, geometry)``."""
    def damage(raw: Path) -> None:
        from medrepro.data.io.nifti import read_volume, write_volume

        path = _file(raw, pattern)
        array, geometry = read_volume(path, dtype=np.int16)
        write_volume(path, *change(array, geometry))

    return damage


def _remove(pattern: str) -> Callable[[Path], None]:
    return lambda raw: _file(raw, pattern).unlink()


def _truncate(raw: Path) -> None:
    path = _file(raw, "*_01_*_flair.nii.gz")
    path.write_bytes(path.read_bytes()[:400])


def _two_dimensional(raw: Path) -> None:
    import SimpleITK as sitk

    path = _file(raw, "*_00_0000_t1ce.nii.gz")
    sitk.WriteImage(sitk.Image(40, 40, sitk.sitkInt16), str(path))


def _edit_landmarks(pattern: str, edit: Callable[[list], list]) -> Callable[[Path], None]:
    def damage(raw: Path) -> None:
        path = _file(raw, pattern)
        lines = path.read_text().splitlines()
        path.write_text("\n".join(edit(lines)) + "\n")

    return damage


def _respaced(array, geometry):
    from dataclasses import replace

    return array, replace(geometry, spacing=(5.0, 6.0, 6.0))


def _outside(lines: list) -> list:
    return lines[:1] + ["1,9999,-5,30"] + lines[2:]


BASELINE_LANDMARKS = "*_00_0000_landmarks.csv"
FOLLOWUP_LANDMARKS = "*_01_*_landmarks.csv"
NOTHING = (PREPARED,)
CHARS = MAX_MESSAGE_CHARS + PATH_CHARS
CASES: list = [
    config_case("brain_verify_without_raw_dir", "brain: {dataset: {source: verify}}\n",
                "brain.dataset.raw_dir = null", "set raw_dir"),
    step_case("brain_verify_without_the_data", obtain(_no_cases), "BraTS-Reg",
              "no BraTSReg_NNN case folder", "med.upenn.edu", max_chars=INSTRUCTIONS_CHARS,
              absent=nothing_obtained("brain")),
    step_case("brain_missing_modality", prepare(_remove("*_01_*_flair.nii.gz")), "_flair.nii.gz",
              "missing follow-up modality flair", max_chars=CHARS, absent=NOTHING),
    step_case("brain_volume_of_another_size", prepare(_rewrite("*_01_*_t1ce.nii.gz", lambda a, g: (a[:, :-2], g))),
              "_t1ce.nii.gz", "grid differs from its pair's", max_chars=CHARS, absent=NOTHING),
    step_case("brain_volume_of_another_spacing", prepare(_rewrite("*_00_0000_flair.nii.gz", _respaced)),
              "_flair.nii.gz", "grid differs", "spacing [5.0, 6.0, 6.0]", max_chars=CHARS, absent=NOTHING),
    step_case("brain_corrupt_nifti", prepare(_truncate), "_flair.nii.gz", "not a readable NIfTI volume",
              max_chars=CHARS, absent=NOTHING),
    step_case("brain_two_dimensional_nifti", prepare(_two_dimensional), "_t1ce.nii.gz", "expected a 3-D volume",
              max_chars=CHARS, absent=NOTHING),
    step_case("brain_landmark_header", prepare(_edit_landmarks(FOLLOWUP_LANDMARKS,
                                                               lambda ls: ["Id,x,y,z"] + ls[1:])),
              "_landmarks.csv", "header must be Landmark,X,Y,Z", max_chars=CHARS, absent=NOTHING),
    step_case("brain_landmark_id_missing", prepare(_edit_landmarks(BASELINE_LANDMARKS,
                                                                   lambda ls: ls[:1] + [",1,2,3"] + ls[2:])),
              "_landmarks.csv", "landmark id '' is not a whole number", max_chars=CHARS, absent=NOTHING),
    step_case("brain_landmark_id_repeated", prepare(_edit_landmarks(FOLLOWUP_LANDMARKS, lambda ls: ls + ls[1:2])),
              "_landmarks.csv", "appear more than once", max_chars=CHARS, absent=NOTHING),
    step_case("brain_landmark_outside", prepare(_edit_landmarks(BASELINE_LANDMARKS, _outside)), "_landmarks.csv",
              "lies outside the volume", max_chars=CHARS, absent=NOTHING),
    step_case("brain_landmark_sets_differ", prepare(_edit_landmarks(BASELINE_LANDMARKS, lambda ls: ls[:-1])),
              "_landmarks.csv", "baseline and follow-up landmarks do not match", max_chars=CHARS, absent=NOTHING),
]
