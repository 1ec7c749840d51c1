"""Paired Wilcoxon signed-rank tests between methods, on scores in the long format (:mod:`medrepro.report.scores`).

For every group (e.g. dataset), metric and unordered pair of methods, each
case's value is first averaged over the seeds (a method run once keeps its
own), the two methods are matched on the case and tested with
``scipy.stats.wilcoxon`` (two-sided, ``zero_method="wilcox"``: cases with a
zero difference are dropped before ranking, as in the classical test). Cases
where either value is NaN are left out of ``n_pairs``.

Degenerate cases are answered without calling scipy:

* no matched case -> statistic and p-value NaN;
* every difference exactly zero -> statistic 0.0 and p = 1.0 (the two methods
  are indistinguishable on these data; scipy would warn and divide by zero).

Bonferroni correction is applied within each (group, metric) over the
number of method pairs tested there, ``p_bonferroni = min(1, p * m)``.
"""

from __future__ import annotations

import itertools
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from medrepro.report.scores import cell_lineage, check_long, seed_means

RESULT_COLUMNS = [
    "metric", "method_a", "method_b", "n_pairs", "median_diff", "statistic", "p_value", "p_bonferroni",
    "n_comparisons",
]


def paired_differences(values: pd.DataFrame, method_a: str, method_b: str) -> np.ndarray:
    """a - b over the cases where both methods have a finite value.

    ``values`` is indexed by case with one column per method.
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


def _groups(means: pd.DataFrame, groups: Sequence[str]) -> Iterator[tuple[dict, pd.DataFrame]]:
    """(the group's column values, its rows), groups in order of appearance."""
    if not groups:
        yield {}, means
        return
    for key, block in means.groupby(list(groups), sort=False):
        yield dict(zip(groups, key)), block


def _test(values: pd.DataFrame, method_a: str, method_b: str, n_comparisons: int) -> dict:
    differences = paired_differences(values, method_a, method_b)
    statistic, p_value = signed_rank_test(differences)
    return {
        "method_a": method_a, "method_b": method_b, "n_pairs": int(differences.size),
        "median_diff": float(np.median(differences)) if differences.size else float("nan"),
        "statistic": statistic, "p_value": p_value,
        "p_bonferroni": min(1.0, p_value * n_comparisons) if np.isfinite(p_value) else float("nan"),
        "n_comparisons": n_comparisons,
    }


def paired_wilcoxon(
    values: pd.DataFrame,
    metrics: Sequence[str],
    groups: Sequence[str] = (),
    methods_order: Sequence[str] | None = None,
    source=None,
) -> pd.DataFrame:
    """Wilcoxon signed-rank tests between every two methods, per group and metric.

    ``values`` is the long format: one row per (groups, method, seed, case)
    with the ``metrics`` columns. The result has the ``groups`` columns, then
    :data:`RESULT_COLUMNS`; ``method_a`` precedes ``method_b`` in
    ``methods_order`` (then order of appearance), ``median_diff`` is the
    median of a - b.
    """
    check_long(values, metrics, groups, source)
    rows = []
    for group, block in _groups(seed_means(values, metrics, groups), groups):
        methods = _method_order(block["method"].unique().tolist(), methods_order)
        comparisons = list(itertools.combinations(methods, 2))
        for metric in metrics:
            by_case = block.pivot(index="case", columns="method", values=metric)
            rows += [{**group, "metric": metric, **_test(by_case, a, b, len(comparisons))} for a, b in comparisons]
    return pd.DataFrame(rows, columns=[*groups, *RESULT_COLUMNS])


def wilcoxon_lineage(tests: pd.DataFrame, values: pd.DataFrame, groups: Sequence[str] = ()) -> dict:
    """``job.cells`` of a :func:`paired_wilcoxon` table: each test traced to the files of its two methods' values."""
    selections = [{**{g: row[g] for g in groups}, "method": (row["method_a"], row["method_b"])}
                  for row in tests.to_dict("records")]
    return cell_lineage(tests, [*groups, "metric", "method_a", "method_b"], values, selections)
