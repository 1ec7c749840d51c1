"""The balanced cardiomegaly cohort of ChestX-ray14 after RCA quality control (paper section 5.3).

Rules: a segmentation passes quality control when its RCA Dice is strictly
above the threshold (0.92 in the paper); among the passing images, the
cardiomegaly group holds every image whose ``Finding Labels`` include
``Cardiomegaly`` (alone or with other findings), and as many healthy controls
(``Finding Labels`` exactly ``No Finding``) are drawn at random without
replacement. With the published RCA scores this gives the paper's 87,870
passing images, 2,019 with cardiomegaly and a cohort of 4,038.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from medrepro.errors import DataError, name_list
from medrepro.studies.chest.cxr14.dataset import NO_FINDING, has_finding

__all__ = ["LABEL_COLUMNS", "RCA_COLUMNS", "read_published_rca", "cohort_counts"]

LABEL_COLUMNS = ("Image Index", "Finding Labels")
RCA_COLUMNS = ("image", "dice")
CARDIOMEGALY = "Cardiomegaly"
PUBLISHED_SUFFIX = "_labels.png"


def _require_columns(table: pd.DataFrame, columns: tuple[str, ...], path: str | Path | None, what: str) -> None:
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise DataError(path, f"{what} lacks column(s) {missing}; found {list(table.columns)}")


def _sorted_names(names) -> str:
    return name_list(sorted(map(str, names)))


def _read_csv(path: str | Path, what: str, **kwargs) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kwargs)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(path, f"cannot read the {what}: {exc}") from exc


def read_published_rca(path: str | Path) -> pd.DataFrame:
    """The authors' RCA scores (``fname``, ``dice``) as ``image``, ``dice``.

    Their ``fname`` names the mask, ``<stem>_labels.png``; the image it
    belongs to is ``<stem>.png``, the label table's ``Image Index``.
    """
    table = _read_csv(path, "RCA score table", dtype={"fname": str}, keep_default_na=False)
    _require_columns(table, ("fname", "dice"), path, "published RCA table")
    names = table["fname"].astype(str)
    wrong = names[~names.str.endswith(PUBLISHED_SUFFIX)]
    if len(wrong):
        raise DataError(path, f"{len(wrong)} fname(s) do not end in {PUBLISHED_SUFFIX!r}: {_sorted_names(wrong)}")
    images = names.str.slice(stop=-len(PUBLISHED_SUFFIX)) + ".png"
    dice = pd.to_numeric(table["dice"], errors="coerce")  # unreadable scores become NaN, rejected downstream
    return pd.DataFrame({"image": images.to_numpy(), "dice": dice.to_numpy(dtype=np.float64)})


def _checked_dice(rca: pd.DataFrame, path: str | Path | None) -> np.ndarray:
    values = pd.to_numeric(rca["dice"], errors="coerce").to_numpy(dtype=np.float64)
    bad = rca["image"][~np.isfinite(values)]
    if len(bad):
        raise DataError(path, f"{len(bad)} RCA score(s) are missing or not finite numbers: {_sorted_names(bad)}")
    return values


def _check_unique(names: pd.Series, path: str | Path | None, what: str) -> None:
    duplicated = names[names.duplicated()]
    if len(duplicated):
        raise DataError(path, f"{what} lists {len(duplicated)} image(s) more than once: "
                              f"{_sorted_names(duplicated.unique())}")


def _matched_table(
    labels_table: pd.DataFrame, rca_table: pd.DataFrame, labels_path: str | Path | None, rca_path: str | Path | None
) -> pd.DataFrame:
    """One row per image: ``image``, ``findings`` (stripped), ``dice``; every image must appear in both tables."""
    _require_columns(labels_table, LABEL_COLUMNS, labels_path, "label table")
    _require_columns(rca_table, RCA_COLUMNS, rca_path, "RCA table")
    label_names = labels_table["Image Index"].astype(str)
    rca_names = rca_table["image"].astype(str)
    _check_unique(label_names, labels_path, "the label table")
    _check_unique(rca_names, rca_path, "the RCA table")
    unknown = set(rca_names) - set(label_names)
    if unknown:
        raise DataError(rca_path, f"{len(unknown)} RCA image(s) are not in the label table {labels_path}: "
                                  f"{_sorted_names(unknown)}")
    unscored = set(label_names) - set(rca_names)
    if unscored:
        raise DataError(rca_path, f"no RCA score for {len(unscored)} image(s) of the label table {labels_path}: "
                                  f"{_sorted_names(unscored)}")
    dice = pd.Series(_checked_dice(rca_table, rca_path), index=rca_names.to_numpy())
    return pd.DataFrame({
        "image": label_names.to_numpy(),
        "findings": labels_table["Finding Labels"].astype(str).str.strip().to_numpy(),
        "dice": dice.loc[label_names.to_numpy()].to_numpy(),
    })


def cohort_counts(
    labels_table: pd.DataFrame,
    rca_table: pd.DataFrame,
    threshold: float,
    seed: int,
    labels_path: str | Path | None = None,
    rca_path: str | Path | None = None,
) -> tuple[dict[str, int], pd.DataFrame]:
    """Counts of each selection step and the balanced cohort (``image``, ``group``, ``label``, ``dice``).

    Healthy controls are drawn with ``numpy.random.default_rng(seed)`` from the
    passing ``No Finding`` images sorted by name, so the cohort depends only on
    the data and the seed, not on row order. Cohort rows: cardiomegaly images
    (label 1) then the sampled controls (label 0), each sorted by name.
    ``labels_path`` and ``rca_path`` only name the tables in error messages.
    """
    table = _matched_table(labels_table, rca_table, labels_path, rca_path)
    passed = table[table["dice"].to_numpy() > threshold]
    cardio = passed[has_finding(passed["findings"], CARDIOMEGALY).to_numpy()].sort_values("image")
    healthy = passed[passed["findings"].to_numpy() == NO_FINDING].sort_values("image")
    if len(healthy) < len(cardio):
        raise DataError(labels_path, f"only {len(healthy)} healthy ({NO_FINDING!r}) images pass quality control "
                                     f"(dice > {threshold}), fewer than the {len(cardio)} cardiomegaly images")
    chosen = np.sort(np.random.default_rng(seed).choice(len(healthy), size=len(cardio), replace=False))
    controls = healthy.iloc[chosen]
    cohort = pd.concat([
        pd.DataFrame({"image": cardio["image"], "group": "cardiomegaly", "label": 1, "dice": cardio["dice"]}),
        pd.DataFrame({"image": controls["image"], "group": "healthy", "label": 0, "dice": controls["dice"]}),
    ], ignore_index=True)
    counts = {
        "images": len(table),
        "qc_passed": len(passed),
        "cardiomegaly": len(cardio),
        "healthy_sampled": len(controls),
        "balanced_total": len(cohort),
    }
    return counts, cohort
