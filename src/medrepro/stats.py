"""Paired Wilcoxon signed-rank tests between registration methods.

For every dataset, metric and unordered pair of methods, the per-pair values
(the class mean of each test pair) of the two methods are matched on
(moving, fixed) and tested with ``scipy.stats.wilcoxon`` (two-sided,
``zero_method="wilcox"``: pairs with a zero difference are dropped before
ranking, as in the classical test). Pairs where either value is NaN are left
out of ``n_pairs``.

Degenerate cases are answered without calling scipy:

* no matched pair -> statistic and p-value NaN;
* every difference exactly zero -> statistic 0.0 and p = 1.0 (the two methods
  are indistinguishable on these data; scipy would warn and divide by zero).

Bonferroni correction is applied within each (dataset, metric) over the
number of method pairs tested there, ``p_bonferroni = min(1, p * m)``.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from medrepro.errors import DataError
from medrepro.tables import require_columns

RESULT_COLUMNS = [
    "dataset", "metric", "method_a", "method_b", "n_pairs", "median_diff",
    "statistic", "p_value", "p_bonferroni", "n_comparisons",
]


def paired_differences(values: pd.DataFrame, method_a: str, method_b: str) -> np.ndarray:
    """a - b over the pairs where both methods have a finite value.

    ``values`` is indexed by (moving, fixed) with one column per method.
    """
    both = values[[method_a, method_b]].dropna()
    return (both[method_a] - both[method_b]).to_numpy(dtype=np.float64)


def signed_rank_test(differences: np.ndarray) -> tuple[float, float]:
    """(statistic, two-sided p-value) of the Wilcoxon signed-rank test on paired differences."""
    if differences.size == 0:
        return float("nan"), float("nan")
    if np.all(differences == 0):
        return 0.0, 1.0
    result = wilcoxon(differences, zero_method="wilcox", alternative="two-sided")
    return float(result.statistic), float(result.pvalue)


def _method_order(methods_present: Sequence[str], methods_order: Sequence[str] | None) -> list[str]:
    if methods_order is None:
        return list(methods_present)
    listed = [m for m in methods_order if m in set(methods_present)]
    return listed + [m for m in methods_present if m not in set(listed)]


def paired_wilcoxon(
    per_pair: pd.DataFrame,
    metrics: Sequence[str] = ("dsc", "hd", "assd"),
    methods_order: Sequence[str] | None = None,
    source=None,
) -> pd.DataFrame:
    """Wilcoxon signed-rank tests between every two methods, per dataset and metric.

    ``per_pair`` has one row per (dataset, method, moving, fixed) with the
    metric columns. ``method_a`` precedes ``method_b`` in ``methods_order``
    (or order of appearance); ``median_diff`` is the median of a - b.
    """
    require_columns(per_pair, ("dataset", "method", "moving", "fixed", *metrics), source)
    duplicated = per_pair.duplicated(["dataset", "method", "moving", "fixed"])
    if duplicated.any():
        first = per_pair.loc[duplicated, ["dataset", "method", "moving", "fixed"]].iloc[0].tolist()
        raise DataError(source, f"more than one row for (dataset, method, moving, fixed) = {first}")
    rows = []
    for dataset, block in per_pair.groupby("dataset", sort=False):
        methods = _method_order(block["method"].unique().tolist(), methods_order)
        comparisons = list(itertools.combinations(methods, 2))
        for metric in metrics:
            values = block.pivot(index=["moving", "fixed"], columns="method", values=metric)
            for method_a, method_b in comparisons:
                differences = paired_differences(values, method_a, method_b)
                statistic, p_value = signed_rank_test(differences)
                rows.append({
                    "dataset": dataset, "metric": metric, "method_a": method_a, "method_b": method_b,
                    "n_pairs": int(differences.size),
                    "median_diff": float(np.median(differences)) if differences.size else float("nan"),
                    "statistic": statistic, "p_value": p_value,
                    "p_bonferroni": min(1.0, p_value * len(comparisons)) if np.isfinite(p_value) else float("nan"),
                    "n_comparisons": len(comparisons),
                })
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)
