"""The common form every dataset is converted to.

A converted subject is an image (float32, 0..1, bright = dense tissue, as a
radiograph is displayed), an integer label map with the same shape
(0 background, 1 right lung, 2 left lung, 3 heart where the dataset has it;
right/left is the patient's side, so the right lung is on the image's left)
and the pixel spacing in mm as (row, column), or None when unknown.

On disk a converted dataset is a directory holding ``images/<name>.mha``,
``labels/<name>.mha`` (SimpleITK MetaImage, compressed, spacing in the header,
spacing 1.0 when unknown) and ``subjects.csv`` with one row per subject and
the dataset's per-subject metadata.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from medrepro.data.atomic import write_csv
from medrepro.errors import DataError
from medrepro.data.io.mha import read_mha, write_mha

BACKGROUND, RIGHT_LUNG, LEFT_LUNG, HEART = 0, 1, 2, 3
LABEL_NAMES = {RIGHT_LUNG: "right lung", LEFT_LUNG: "left lung", HEART: "heart"}


@dataclasses.dataclass
class Subject:
    name: str
    image: np.ndarray  # float32 (H, W) in [0, 1]
    labels: np.ndarray  # uint8 (H, W)
    spacing: tuple[float, float] | None  # mm per pixel (row, col)
    meta: dict = dataclasses.field(default_factory=dict)

    def validate(self, allowed_labels: Iterable[int], source: str | Path | None = None) -> None:
        """Raise DataError unless image and labels agree and labels are allowed."""
        where = source or self.name
        if self.image.ndim != 2:
            raise DataError(where, f"image must be 2-D, got shape {self.image.shape}")
        if self.image.shape != self.labels.shape:
            raise DataError(
                where,
                f"image/mask size mismatch: image {self.image.shape[::-1]} (w x h) vs "
                f"mask {self.labels.shape[::-1]} (w x h)",
            )
        found = set(np.unique(self.labels).tolist())
        unexpected = found - set(allowed_labels)
        if unexpected:
            raise DataError(where, f"mask has unexpected labels {sorted(unexpected)}; allowed {sorted(allowed_labels)}")


def save_subjects(subjects: Iterable[Subject], directory: str | Path) -> pd.DataFrame:
    """Write subjects in the common form under ``directory`` (which must be new or a temp dir)."""
    directory = Path(directory)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    (directory / "labels").mkdir(parents=True, exist_ok=True)
    rows = []
    for s in subjects:
        write_mha(s.image.astype(np.float32), s.spacing, directory / "images" / f"{s.name}.mha")
        write_mha(s.labels.astype(np.uint8), s.spacing, directory / "labels" / f"{s.name}.mha")
        row = {"name": s.name, "height": s.image.shape[0], "width": s.image.shape[1]}
        row["spacing_row_mm"] = np.nan if s.spacing is None else s.spacing[0]
        row["spacing_col_mm"] = np.nan if s.spacing is None else s.spacing[1]
        row.update(s.meta)
        rows.append(row)
    table = pd.DataFrame(rows)
    write_csv(directory / "subjects.csv", table)
    return table


def load_subjects(directory: str | Path, names: Iterable[str] | None = None) -> list[Subject]:
    """Read a converted dataset directory back (only ``names``, in table order, when given)."""
    directory = Path(directory)
    table_path = directory / "subjects.csv"
    if not table_path.exists():
        raise DataError(table_path, "missing: not a converted dataset directory")
    table = pd.read_csv(table_path, dtype={"name": str})
    if names is not None:
        wanted = set(names)
        missing = wanted - set(table["name"])
        if missing:
            raise DataError(table_path, f"no subject(s) {sorted(missing)[:5]} in the converted dataset")
        table = table[table["name"].isin(wanted)]
    subjects = []
    for row in table.to_dict("records"):
        name = str(row.pop("name"))
        image, _ = read_mha(directory / "images" / f"{name}.mha")
        labels, _ = read_mha(directory / "labels" / f"{name}.mha")
        sr, sc = row.pop("spacing_row_mm"), row.pop("spacing_col_mm")
        row.pop("height", None), row.pop("width", None)
        spacing = None if (pd.isna(sr) or pd.isna(sc)) else (float(sr), float(sc))
        subjects.append(Subject(name, image.astype(np.float32), labels.astype(np.uint8), spacing, row))
    return subjects
