"""Per-pair evaluation: one row per (pair, class), then the class mean per pair.

The study reports, for every test pair, the mean over the foreground classes
(left/right lung and heart where annotated) of DSC, HD and ASSD, and then the
mean and SD of those per-pair means over all pairs (Table 1).

A class that is empty in exactly one of the two label maps has an undefined
(NaN) HD and ASSD (see :mod:`medrepro.metrics.surface`); :func:`pair_means`
leaves it out of the distance means and counts it in ``n_undefined``. Its
Dice (0.0) is kept, because an organ that vanished is a real failure.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from medrepro.errors import DataError
from medrepro.report.tables import require_columns
from medrepro.metrics.overlap import dice
from medrepro.metrics.surface import Spacing, surface_scores

METRICS = ("dsc", "hd", "assd")
# ``source``: the file a pair's rows were read from, carried for the tables' cell lineage.
PAIR_KEYS = ("dataset", "method", "seed", "moving", "fixed", "source")


def resolve_spacing(spacing: Spacing) -> tuple[tuple[float, ...] | None, str]:
    """Map a stored spacing to (spacing for the metrics, distance unit).

    The prealigned dataset stores NaN when the spacing is unknown (Shenzhen);
    distances are then reported in pixels, as in the paper.
    """
    if spacing is None:
        return None, "px"
    values = np.atleast_1d(np.asarray(spacing, dtype=np.float64))
    if np.any(np.isnan(values)):
        return None, "px"
    return tuple(float(v) for v in values), "mm"


def score_pair(
    pred_labels: np.ndarray,
    ref_labels: np.ndarray,
    labels: Sequence[int],
    spacing: Spacing = None,
) -> list[dict]:
    """Score a warped label map against the reference, one row per class in ``labels``.

    Rows hold ``label, dsc, hd, assd``; distances are in the unit of ``spacing``
    (per array axis, (row, col)), or pixels when it is None.
    """
    pred_labels, ref_labels = np.asarray(pred_labels), np.asarray(ref_labels)
    if pred_labels.shape != ref_labels.shape:
        raise ValueError(f"label maps differ in shape: {pred_labels.shape} vs {ref_labels.shape}")
    rows = []
    for label in labels:
        pred, ref = pred_labels == label, ref_labels == label
        scores = surface_scores(pred, ref, spacing)
        rows.append({"label": int(label), "dsc": dice(pred, ref), "hd": scores.hd, "assd": scores.assd})
    return rows


def pair_means(per_class: pd.DataFrame, source=None) -> pd.DataFrame:
    """Mean over classes for every (dataset, method, moving, fixed) pair.

    ``dataset`` and ``method`` are grouping keys when present (a single
    ``eval/{method}.csv`` has neither). NaN distances (class empty in one map)
    are skipped and counted in ``n_undefined``. A ``distance_unit`` column, if
    present, must be constant within a pair and is carried over.
    """
    require_columns(per_class, ("moving", "fixed", "label", *METRICS), source)
    keys = [k for k in PAIR_KEYS if k in per_class.columns]
    grouped = per_class.groupby(keys, sort=False, dropna=False)
    result = grouped[list(METRICS)].mean()
    result["n_labels"] = grouped["label"].count()
    result["n_undefined"] = grouped["hd"].apply(lambda s: int(s.isna().sum()))
    if "distance_unit" in per_class.columns:
        units = grouped["distance_unit"].unique()
        mixed = units[units.map(len) > 1]
        if len(mixed):
            raise DataError(source, f"pair {mixed.index[0]} mixes distance units {list(mixed.iloc[0])}")
        result["distance_unit"] = units.map(lambda u: u[0])
    return result.reset_index()


def pair_values(per_class: pd.DataFrame, source=None) -> pd.DataFrame:
    """The class means per pair in the long format of :mod:`medrepro.report.scores`.

    ``case`` names the pair as ``moving|fixed``; a method run once (no
    ``seed`` column) has seed NaN.
    """
    if "seed" not in per_class.columns:
        per_class = per_class.assign(seed=np.nan)
    means = pair_means(per_class, source)
    return means.assign(case=means["moving"].astype(str) + "|" + means["fixed"].astype(str))
