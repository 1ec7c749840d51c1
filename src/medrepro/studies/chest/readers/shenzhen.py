"""Shenzhen Hospital chest X-ray set (NLM) with the separately released lung masks.

Layout::

    <images_root>/ChinaSet_AllFiles/CXR_png/CHNCXR_0001_0.png
    <images_root>/ChinaSet_AllFiles/ClinicalReadings/CHNCXR_0001_0.txt
    <mask_root>/mask/CHNCXR_0001_0_mask.png

Images are PNGs in mode ``P`` (most), ``RGB`` with equal channels or ``L``;
they are reduced to grey by :mod:`medrepro.data.io.png`. Readings hold sex and age
on the first line (``male 35yrs``, with typos) and ``normal`` or the findings
below. The mask release covers only part of the set (566 of 662 images): only
images with a mask are converted, and the count is logged.

The mask is one binary image for both lungs. :func:`split_lungs` separates
them: every connected component goes to the side of the column through the
mask's centre of mass on which its own centroid lies (image left = patient's
right lung, label 1). The centre of mass of two lungs lies between them even
when the patient is off-centre, which the image's middle column does not
guarantee. Where the lungs touch (a component has at least a fifth of its
pixels on each side of that column), the component is cut at the column with
the fewest of its pixels within a tenth of the image width around the centre
of mass, which is where a thin bridge between two touching lungs is found;
without such a narrowing this is the centre-of-mass column itself.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from scipy import ndimage

from medrepro.data.atomic import atomic_path
from medrepro.errors import DataError
from medrepro.studies.chest.subjects import LEFT_LUNG, RIGHT_LUNG, Subject
from medrepro.studies.chest.readers.montgomery import LUNG_LABELS, parse_age_years, parse_sex, tb_flag
from medrepro.data.io.png import normalise_grey, read_binary_mask, read_grey

log = logging.getLogger(__name__)

SET_DIR = "ChinaSet_AllFiles"
MASK_SUFFIX = "_mask.png"
#: A component with at least this share of its pixels on each side of the
#: centre-of-mass column is two touching lungs rather than one lung.
TOUCHING_SHARE = 0.2


# ---------------------------------------------------------------- readings


def parse_shenzhen_reading(text: str) -> dict:
    """Sex, age and findings from a reading; tolerant of the typos in the real files."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else ""
    sex = parse_sex(first)
    age_match = re.search(r"\d.*", first)
    age = parse_age_years(age_match.group(0)) if age_match else None
    findings = "; ".join(lines[1:]) or None
    return {"sex": sex, "age": age, "findings": findings}


def read_shenzhen_reading(path: str | Path) -> dict:
    path = Path(path)
    try:
        return parse_shenzhen_reading(path.read_text(encoding="latin-1"))
    except OSError as exc:
        raise DataError(path, f"cannot read clinical reading: {exc}") from exc


def write_shenzhen_reading(path: str | Path, first_line: str, findings: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(f"{first_line}\n{findings}\n", encoding="latin-1")


# ---------------------------------------------------------------- lung split


def _cut_column(mask: np.ndarray, centre_col: float) -> int:
    """Column of fewest ``mask`` pixels within +-10% of the width around ``centre_col``."""
    width = mask.shape[1]
    half = max(1, width // 10)
    lo, hi = max(0, int(round(centre_col)) - half), min(width, int(round(centre_col)) + half + 1)
    profile = mask[:, lo:hi].sum(axis=0)
    candidates = np.flatnonzero(profile == profile.min()) + lo
    return int(candidates[np.argmin(np.abs(candidates - centre_col))])


def split_lungs(mask: np.ndarray, source: str | Path | None = None) -> np.ndarray:
    """Label map (1 = image-left lung = patient's right, 2 = the other) from a both-lung mask.

    See the module docstring for the rule. Raises DataError for an empty mask.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise DataError(source, "lung mask is empty")
    components, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    rows, cols = np.nonzero(mask)
    centre_col = float(cols.mean())
    ids = components[rows, cols]
    size = np.bincount(ids, minlength=count + 1).astype(float)
    size[0] = 1.0  # background never occurs among mask pixels; avoid 0/0
    share_left = np.bincount(ids, weights=cols < centre_col, minlength=count + 1) / size
    mean_col = np.bincount(ids, weights=cols, minlength=count + 1) / size
    side = np.where(mean_col < centre_col, RIGHT_LUNG, LEFT_LUNG).astype(np.uint8)
    side[0] = 0
    labels = side[components]
    touching = np.flatnonzero(np.minimum(share_left, 1.0 - share_left) >= TOUCHING_SHARE)
    for index in touching[touching > 0]:
        component = components == index
        cut = _cut_column(component, centre_col)
        labels[component] = np.where(np.arange(mask.shape[1]) <= cut, RIGHT_LUNG, LEFT_LUNG)[
            np.nonzero(component)[1]
        ]
    return labels


# ---------------------------------------------------------------- layout and conversion


def shenzhen_dir(images_root: str | Path) -> Path:
    """The ``ChinaSet_AllFiles`` folder, given it or its parent."""
    root = Path(images_root)
    return root if (root / "CXR_png").is_dir() else root / SET_DIR


def shenzhen_mask_dir(mask_root: str | Path) -> Path:
    """The folder with ``*_mask.png``, given it or its parent."""
    root = Path(mask_root)
    return root / "mask" if (root / "mask").is_dir() or not root.is_dir() else root


def list_shenzhen_images(images_root: str | Path) -> list[Path]:
    folder = shenzhen_dir(images_root) / "CXR_png"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file())


def shenzhen_mask_path(mask_root: str | Path, name: str) -> Path:
    return shenzhen_mask_dir(mask_root) / f"{name}{MASK_SUFFIX}"


def shenzhen_mask_coverage(images_root: str | Path, mask_root: str | Path) -> tuple[list[str], list[str]]:
    """Names of the images that have a lung mask, and of those that do not."""
    names = [p.stem for p in list_shenzhen_images(images_root)]
    with_mask = [n for n in names if shenzhen_mask_path(mask_root, n).is_file()]
    present = set(with_mask)
    return with_mask, [n for n in names if n not in present]


def read_shenzhen_subject(
    image_path: str | Path, mask_path: str | Path, reading_path: str | Path | None, spacing_mm: float | None
) -> Subject:
    """One Shenzhen image with its split lung labels and reading, in the common form."""
    image_path = Path(image_path)
    name = image_path.stem
    stored = read_grey(image_path)
    mask = read_binary_mask(mask_path, expected_shape=stored.shape)
    labels = split_lungs(mask, source=mask_path)
    meta = {"tb": tb_flag(name), "sex": None, "age": None, "findings": None}
    if reading_path is not None and Path(reading_path).is_file():
        meta.update(read_shenzhen_reading(reading_path))
    else:
        log.warning("%s: no clinical reading; sex and age left empty", reading_path)
    spacing = None if spacing_mm is None else (float(spacing_mm), float(spacing_mm))
    subject = Subject(name, normalise_grey(stored, image_path), labels, spacing, meta)
    subject.validate(LUNG_LABELS, source=image_path)
    return subject


def iter_shenzhen(
    images_root: str | Path,
    mask_root: str | Path,
    spacing_mm: float | None = None,
    names: Iterable[str] | None = None,
) -> Iterator[Subject]:
    """Yield the Shenzhen subjects that have a lung mask, one at a time."""
    images = list_shenzhen_images(images_root)
    if not images:
        raise DataError(shenzhen_dir(images_root) / "CXR_png", "no Shenzhen images (*.png) found")
    with_mask, without_mask = shenzhen_mask_coverage(images_root, mask_root)
    if not with_mask:
        raise DataError(shenzhen_mask_dir(mask_root), f"no lung masks (*{MASK_SUFFIX}) for any of {len(images)} images")
    log.info(
        "Shenzhen: converting %d of %d images that have a lung mask (%d without)",
        len(with_mask), len(images), len(without_mask),
    )
    selected = with_mask
    if names is not None:
        wanted = [Path(n).stem for n in names]
        missing = [n for n in wanted if n not in set(with_mask)]
        if missing:
            raise DataError(shenzhen_mask_dir(mask_root), f"no image with a lung mask for {', '.join(missing[:5])}")
        selected = wanted
    folder = shenzhen_dir(images_root)
    for name in selected:
        yield read_shenzhen_subject(
            folder / "CXR_png" / f"{name}.png",
            shenzhen_mask_path(mask_root, name),
            folder / "ClinicalReadings" / f"{name}.txt",
            spacing_mm,
        )


def convert_shenzhen(
    images_root: str | Path,
    mask_root: str | Path,
    spacing_mm: float | None = None,
    names: Iterable[str] | None = None,
) -> list[Subject]:
    """The Shenzhen images that have a lung mask, at native resolution (spacing unknown by default)."""
    return list(iter_shenzhen(images_root, mask_root, spacing_mm, names))
