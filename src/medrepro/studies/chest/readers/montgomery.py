"""Montgomery County chest X-ray set (NLM).

Layout under the dataset root (the folder that holds ``MontgomerySet``)::

    MontgomerySet/CXR_png/MCUCXR_0001_0.png
    MontgomerySet/ManualMask/leftMask/MCUCXR_0001_0.png
    MontgomerySet/ManualMask/rightMask/MCUCXR_0001_0.png
    MontgomerySet/ClinicalReadings/MCUCXR_0001_0.txt

The last digit of the name is 1 for tuberculosis. Images are 8- or 16-bit
PNGs; PNG headers do not reliably carry the pixel size, so the spacing
(0.0875 mm in the real set) is passed in by the caller. ``leftMask`` is the
lung on the image's left, i.e. the patient's right lung (label 1);
``rightMask`` is the patient's left lung (label 2). Where both masks claim a
pixel, label 2 (painted last) wins.

This module also holds the parsing of sex and age strings shared by the two
NLM sets.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from medrepro.data.atomic import atomic_path
from medrepro.errors import DataError
from medrepro.studies.chest.subjects import LEFT_LUNG, RIGHT_LUNG, Subject
from medrepro.data.io.png import normalise_grey, read_binary_mask, read_grey

log = logging.getLogger(__name__)

MONTGOMERY_SPACING_MM = 0.0875
SET_DIR = "MontgomerySet"
LUNG_LABELS = (0, RIGHT_LUNG, LEFT_LUNG)
#: mask folder -> label (image-left lung is the patient's right lung)
MASK_FOLDERS: dict[str, int] = {"leftMask": RIGHT_LUNG, "rightMask": LEFT_LUNG}
_NAME_RE = re.compile(r"^[A-Z]+_\d+_([01])$", re.IGNORECASE)


# ---------------------------------------------------------------- readings (shared with Shenzhen)


def parse_sex(text: str) -> str | None:
    """``"M"``/``"F"`` from free text such as ``F``, ``female``, ``Femal``, ``male35yrs``; None if absent."""
    low = text.strip().lower()
    if re.match(r"^(f\b|fe?m|fmale|woman|girl)", low):
        return "F"
    if re.match(r"^(m\b|ma|man|boy)", low):
        return "M"
    return None


def parse_age_years(text: str) -> float | None:
    """Age in years from ``027Y``, ``35yrs``, ``35 yrs``, ``8 months``, ``10d``; None if absent.

    Month and day ages are converted to fractional years (2 decimals).
    """
    match = re.search(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text.lower())
    if not match:
        return None
    value, unit = float(match.group(1)), match.group(2)
    if unit.startswith("mo") or unit == "m":
        value /= 12.0
    elif unit.startswith("d"):
        value /= 365.0
    elif unit.startswith("w"):
        value /= 52.0
    return round(value, 2)


def read_montgomery_reading(path: str | Path) -> dict:
    """Sex, age and the remaining free-text lines of a ``ClinicalReadings`` file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="latin-1")
    except OSError as exc:
        raise DataError(path, f"cannot read clinical reading: {exc}") from exc
    sex = age = None
    findings = []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        low = key.strip().lower()
        if value and low.endswith("sex"):
            sex = parse_sex(value)
        elif value and low.endswith("age"):
            age = parse_age_years(value)
        elif line.strip():
            findings.append(line.strip())
    return {"sex": sex, "age": age, "findings": "; ".join(findings) or None}


def write_montgomery_reading(path: str | Path, sex: str, age: int, findings: str) -> None:
    """Write a reading in the NLM layout (``Patient's Sex: F``, ``Patient's Age: 027Y``)."""
    with atomic_path(path) as tmp:
        tmp.write_text(f"Patient's Sex: {sex}\nPatient's Age: {int(age):03d}Y\n{findings}\n", encoding="latin-1")


def tb_flag(name: str) -> int:
    """1 for tuberculosis, 0 for normal, from the name's last digit."""
    match = _NAME_RE.match(name)
    if not match:
        raise DataError(None, f"{name!r} does not end in _0 or _1 (normal / tuberculosis)")
    return int(match.group(1))


# ---------------------------------------------------------------- layout and conversion


def montgomery_dir(root: str | Path) -> Path:
    """The ``MontgomerySet`` folder, given it or its parent."""
    root = Path(root)
    return root if (root / "CXR_png").is_dir() else root / SET_DIR


def list_montgomery_images(root: str | Path) -> list[Path]:
    """The PNGs under ``CXR_png``, sorted by name."""
    folder = montgomery_dir(root) / "CXR_png"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file())


def montgomery_mask_path(root: str | Path, name: str, folder: str) -> Path:
    return montgomery_dir(root) / "ManualMask" / folder / f"{name}.png"


def read_lung_labels(root: str | Path, name: str, shape: tuple[int, int]) -> np.ndarray:
    """Label map from the two Montgomery masks, each checked against the image size."""
    labels = np.zeros(shape, dtype=np.uint8)
    for folder, label in MASK_FOLDERS.items():
        path = montgomery_mask_path(root, name, folder)
        if not path.is_file():
            raise DataError(path, f"{folder} mask for {name} not found")
        labels[read_binary_mask(path, expected_shape=shape)] = label
    return labels


def _warn_if_incomplete(reading: Path, meta: dict) -> None:
    """A reading without sex or age (an empty file, or lines not in the NLM form) is named, not passed silently."""
    absent = [field for field in ("sex", "age") if meta.get(field) is None]
    if absent:
        problem = "is empty" if reading.stat().st_size == 0 else "gives no " + " and no ".join(absent)
        log.warning("%s: clinical reading %s (expected lines like \"Patient's Sex: F\", \"Patient's Age: 027Y\"); "
                    "%s left empty", reading, problem, " and ".join(absent))


def read_montgomery_subject(root: str | Path, image_path: str | Path, spacing_mm: float | None) -> Subject:
    """One Montgomery image, its lung labels and its reading, in the common form."""
    image_path = Path(image_path)
    name = image_path.stem
    stored = read_grey(image_path)
    labels = read_lung_labels(root, name, stored.shape)
    meta = {"tb": tb_flag(name), "sex": None, "age": None}
    reading = montgomery_dir(root) / "ClinicalReadings" / f"{name}.txt"
    if reading.is_file():
        meta.update(read_montgomery_reading(reading))
        _warn_if_incomplete(reading, meta)
    else:
        log.warning("%s: no clinical reading; sex and age left empty", reading)
    spacing = None if spacing_mm is None else (float(spacing_mm), float(spacing_mm))
    subject = Subject(name, normalise_grey(stored, image_path), labels, spacing, meta)
    subject.validate(LUNG_LABELS, source=image_path)
    return subject


def iter_montgomery(
    root: str | Path, spacing_mm: float | None, names: Iterable[str] | None = None
) -> Iterator[Subject]:
    """Yield converted Montgomery subjects one at a time."""
    images = list_montgomery_images(root)
    if not images:
        raise DataError(montgomery_dir(root) / "CXR_png", "no Montgomery images (*.png) found")
    if names is not None:
        by_name = {p.stem: p for p in images}
        wanted = [Path(n).stem for n in names]
        missing = [n for n in wanted if n not in by_name]
        if missing:
            raise DataError(montgomery_dir(root) / "CXR_png", f"no image for {', '.join(missing[:5])}")
        images = [by_name[n] for n in wanted]
    incomplete = 0
    for path in images:
        subject = read_montgomery_subject(root, path, spacing_mm)
        incomplete += subject.meta.get("sex") is None or subject.meta.get("age") is None
        yield subject
    if incomplete:
        log.warning("Montgomery: %d of %d subjects have no sex or age (clinical reading missing, empty or "
                    "incomplete; each is named above)", incomplete, len(images))


def convert_montgomery(
    root: str | Path, spacing_mm: float | None, names: Iterable[str] | None = None
) -> list[Subject]:
    """All (or the named) Montgomery images with lung labels at native resolution."""
    return list(iter_montgomery(root, spacing_mm, names))
