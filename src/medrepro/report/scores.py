"""Per-case scores in the one long format that statistics, claims and table lineage read.

One row per (method, seed, case), with one column per metric:

* ``method``: the method's name;
* ``seed``: the replicate seed it was trained with; NaN for a method run once
  (an identity, an iterative baseline), whose values serve every seed;
* ``case``: the test case (a pair of images, an image, a patient), as text;
* any grouping columns (``dataset``): each group is judged on its own;
* ``source``, where present: the file the row was read from, which
  :func:`cell_lineage` turns into a table's cell lineage.

No metric is assumed: the caller names its metrics (and, for a claim, which
direction is better).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from medrepro.errors import DataError
from medrepro.report.tables import require_columns

KEYS = ("method", "seed", "case")
SOURCE = "source"


def check_long(values: pd.DataFrame, metrics: Sequence[str], groups: Sequence[str] = (), source=None) -> None:
    """Raise DataError naming ``source`` for a missing column or a repeated (groups, method, seed, case)."""
    require_columns(values, (*groups, *KEYS, *metrics), source)
    keys = [*groups, *KEYS]
    duplicated = values.duplicated(keys)
    if duplicated.any():
        first = values.loc[duplicated, keys].iloc[0].tolist()
        raise DataError(source, f"more than one row for ({', '.join(keys)}) = {first}")


def seed_means(values: pd.DataFrame, metrics: Sequence[str], groups: Sequence[str] = ()) -> pd.DataFrame:
    """Each case's value per (groups, method), averaged over the seeds; NaN values are skipped."""
    return values.groupby([*groups, "method", "case"], sort=False)[list(metrics)].mean().reset_index()


def sources(values: pd.DataFrame, selection: Mapping[str, object]) -> list[str]:
    """The files (column ``source``) of the rows whose columns hold the selected values, in order of appearance.

    A selection value is one value or a list/tuple/set of them.
    """
    chosen = np.ones(len(values), dtype=bool)
    for column, wanted in selection.items():
        wanted = list(wanted) if isinstance(wanted, (list, tuple, set, frozenset)) else [wanted]
        chosen &= values[column].isin(wanted).to_numpy()
    return list(dict.fromkeys(values.loc[chosen, SOURCE].astype(str)))


def cell_lineage(
    table: pd.DataFrame,
    key_columns: Sequence[str],
    values: pd.DataFrame,
    selections: Sequence[Mapping[str, object]] | None = None,
) -> dict:
    """A step's ``job.cells``: each row of ``table`` traced to the files of the long ``values`` it was computed from.

    A row is named by its ``key_columns`` joined with ``/`` (as ``medrepro
    provenance --row`` names it). ``selections`` holds, per table row, the
    values of ``values``' columns behind it (:func:`sources`); by default the
    row's key columns that ``values`` also has.
    """
    records = table.to_dict("records")
    if selections is None:
        shared = [c for c in key_columns if c in values.columns]
        selections = [{c: record[c] for c in shared} for record in records]
    if len(selections) != len(records):
        raise ValueError(f"{len(selections)} selections for a table of {len(records)} rows")
    rows = {"/".join(str(record[c]) for c in key_columns): sources(values, selection)
            for record, selection in zip(records, selections)}
    return {"key_columns": list(key_columns), "rows": rows}
