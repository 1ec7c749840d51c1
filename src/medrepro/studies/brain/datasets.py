"""BraTS-Reg 2022 for the kernel's sourcing: what is needed, where it goes, and the check that it is there.

BraTS-Reg (Baheti et al., arXiv:2112.06979; 140 training and 20 validation pairs of pre-operative and follow-up
MRI of diffuse glioma patients) is distributed after registration and a signed data use agreement, so there is no
download: the user places the release under the raw directory (:mod:`.readers.brats_reg`: the case folders, at
its top or in the release's own ``BraTSReg_Training_Data_v3/`` and ``BraTSReg_Validation_Data/`` folders) and the
obtain step verifies it in ``verify`` mode, pinning its digests at first use
(:mod:`medrepro.provenance.pinning`) and stopping on any later change. :func:`check_layout` says which part is
missing and checks every case's files, grids and landmark files before any training starts. Registered as
``BraTS-Reg``.
"""

from __future__ import annotations

from pathlib import Path

from medrepro.data.sourcing import Dataset, Source, instructions, register
from medrepro.errors import DataError
from medrepro.studies.brain.readers import brats_reg

NAME = "BraTS-Reg"
SITE = "https://www.med.upenn.edu/cbica/brats-reg-challenge/"
ACCESS = ("registration on the challenge's site and a signed data use agreement (Synapse, syn27780735 "
          "family); cite Baheti et al., arXiv:2112.06979")

SOURCES = (Source(
    what="BraTS-Reg 2022 training (140 cases) and validation (20 cases) data",
    urls=(SITE,),
    access=ACCESS,
    automatic=False,
    put_under=".",
    expect=(f"{brats_reg.TRAINING_DIR}/BraTSReg_NNN/ and {brats_reg.VALIDATION_DIR}/BraTSReg_NNN/, each with "
            "BraTSReg_NNN_00_0000_<t1|t1ce|t2|flair>.nii.gz, BraTSReg_NNN_01_<DDDD>_<mod>.nii.gz and the "
            "landmark CSVs (Landmark,X,Y,Z)"),
),)


def check_layout(raw_root: str | Path) -> dict:
    """Every case folder complete, its two scans on one grid and its landmarks readable, inside the volume and
    matching between the scans; counts of cases with and without baseline landmarks and of landmarks."""
    raw_root = Path(raw_root)
    if not raw_root.is_dir():
        raise DataError(raw_root, "no such folder. " + instructions(NAME, raw_root))
    if not brats_reg.case_folders(raw_root):
        raise DataError(raw_root, "holds no BraTSReg_NNN case folder. " + instructions(NAME, raw_root))
    counts = {"cases": 0, "training_cases": 0, "validation_cases": 0, "landmarks": 0}
    for case in brats_reg.index_cases(raw_root):
        shape, geometry = brats_reg.check_pair_grids(case)
        follow_ids, _ = brats_reg.landmarks_in_voxels(case.followup_landmarks, geometry, shape)
        if case.has_baseline_landmarks:
            base_ids, _ = brats_reg.landmarks_in_voxels(case.baseline_landmarks, geometry, shape)
            brats_reg.check_matching_ids(case.baseline_landmarks, base_ids, case.followup_landmarks, follow_ids)
        counts["cases"] += 1
        counts["training_cases" if case.has_baseline_landmarks else "validation_cases"] += 1
        counts["landmarks"] += len(follow_ids)
    return counts


register(Dataset(name=NAME, sources=SOURCES, check_layout=check_layout))
