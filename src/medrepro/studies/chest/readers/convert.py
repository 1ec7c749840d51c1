"""One entry point for converting any of the three chest X-ray datasets.

Each dataset's raw directory (``results/raw/{dataset}``, synthetic or a
user's copy) is laid out as follows:

* JSRT: ``images/*.IMG`` (plus ``CLNDAT_EN.txt``, ``CNNDAT_EN.TXT``) and
  ``scr/scratch/fold1|fold2/masks/<organ>/<NAME>.gif``;
* Montgomery: ``MontgomerySet/{CXR_png,ManualMask,ClinicalReadings}/...``;
* Shenzhen: ``ChinaSet_AllFiles/{CXR_png,ClinicalReadings}/...`` and
  ``shcxr-lung-mask/mask/*_mask.png``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

from medrepro.errors import ConfigError
from medrepro.studies.chest.subjects import Subject
from medrepro.studies.chest.readers.jsrt import JSRT_SPACING_MM, iter_jsrt
from medrepro.studies.chest.readers.montgomery import iter_montgomery
from medrepro.studies.chest.readers.shenzhen import iter_shenzhen

CHEST_DATASETS = ("JSRT", "Montgomery", "Shenzhen")


def _check_dataset(dataset: str) -> None:
    if dataset not in CHEST_DATASETS:
        raise ConfigError(f"unknown chest dataset {dataset!r}; expected one of {', '.join(CHEST_DATASETS)}")


def n_classes(dataset: str) -> int:
    """Number of label classes including background: 4 for JSRT (lungs + heart), 3 otherwise."""
    _check_dataset(dataset)
    return 4 if dataset == "JSRT" else 3


def dataset_paths(dataset: str, raw_root: str | Path) -> dict[str, Path]:
    """The folders each converter reads, inside a dataset's raw directory."""
    _check_dataset(dataset)
    raw_root = Path(raw_root)
    if dataset == "JSRT":
        return {"images": raw_root / "images", "scr": raw_root / "scr"}
    if dataset == "Montgomery":
        return {"root": raw_root}
    return {"images": raw_root, "masks": raw_root / "shcxr-lung-mask"}


def iter_dataset(dataset: str, raw_root: str | Path, spacing_mm: float | None) -> Iterator[Subject]:
    """Yield converted subjects one at a time (use with ``save_subjects`` for the full-size sets).

    ``spacing_mm`` is the native pixel spacing. JSRT fixes it (0.175 mm;
    converted subjects have 0.35 mm) so only None or 0.175 is accepted there;
    for Montgomery (0.0875 mm in the real set) and Shenzhen (unknown: None) it
    is whatever the caller knows.
    """
    paths = dataset_paths(dataset, raw_root)
    if dataset == "JSRT":
        if spacing_mm is not None and not math.isclose(float(spacing_mm), JSRT_SPACING_MM):
            raise ConfigError(f"JSRT pixel spacing is fixed at {JSRT_SPACING_MM} mm by its format; got {spacing_mm}")
        return iter_jsrt(paths["images"], paths["scr"])
    if dataset == "Montgomery":
        return iter_montgomery(paths["root"], spacing_mm)
    return iter_shenzhen(paths["images"], paths["masks"], spacing_mm)


def convert_dataset(dataset: str, raw_root: str | Path, spacing_mm: float | None) -> list[Subject]:
    """All subjects of a dataset's raw directory in the common form (see :func:`iter_dataset`)."""
    return list(iter_dataset(dataset, raw_root, spacing_mm))
