"""The long format of per-case scores: its checks, seed means, and a table's cell lineage from it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medrepro.errors import DataError
from medrepro.report.scores import cell_lineage, check_long, seed_means, sources


@pytest.fixture
def values() -> pd.DataFrame:
    """Two datasets; method A with two seeds (one file per seed), B run once."""
    rows = []
    for dataset in ("X", "Y"):
        for case, (a0, a1, b) in enumerate([(1.0, 3.0, 0.5), (2.0, np.nan, 1.5)]):
            for method, seed, dsc, file in (("A", 0, a0, "A0"), ("A", 1, a1, "A1"), ("B", np.nan, b, "B")):
                rows.append({"dataset": dataset, "method": method, "seed": seed, "case": f"c{case}", "dsc": dsc,
                             "source": f"{dataset}/{file}"})
    return pd.DataFrame(rows)


def test_check_long_names_the_source_for_a_missing_column_or_a_repeated_row(values):
    check_long(values, ("dsc",), ("dataset",))
    with pytest.raises(DataError, match=r"scores\.csv.*'hd'"):
        check_long(values, ("hd",), source="scores.csv")
    with pytest.raises(DataError, match=r"more than one row for \(method, seed, case\)"):
        check_long(values, ("dsc",))  # the same (method, seed, case) in both datasets
    with pytest.raises(DataError, match="more than one row"):
        check_long(pd.concat([values, values.iloc[[2]]]), ("dsc",), ("dataset",))  # a seedless row twice


def test_seed_means_average_each_case_over_the_seeds_skipping_nan(values):
    means = seed_means(values, ("dsc",), ("dataset",))
    assert list(means.columns) == ["dataset", "method", "case", "dsc"]
    x = means[means["dataset"] == "X"].set_index(["method", "case"])["dsc"]
    assert x[("A", "c0")] == 2.0 and x[("A", "c1")] == 2.0 and x[("B", "c1")] == 1.5


def test_sources_keep_the_order_of_appearance_and_take_one_value_or_several(values):
    assert sources(values, {"dataset": "Y", "method": "A"}) == ["Y/A0", "Y/A1"]
    assert sources(values, {"dataset": "X", "method": ("B", "A")}) == ["X/A0", "X/A1", "X/B"]
    assert sources(values, {"method": "C"}) == []


def test_cell_lineage_keys_rows_like_the_provenance_command(values):
    table = pd.DataFrame({"dataset": ["X", "Y"], "method": ["A", "B"], "dsc_mean": [2.0, 1.0]})
    cells = cell_lineage(table, ["dataset", "method"], values)
    assert cells == {"key_columns": ["dataset", "method"], "rows": {"X/A": ["X/A0", "X/A1"], "Y/B": ["Y/B"]}}
    chosen = cell_lineage(table, ["dataset", "method"], values, [{"method": "A"}, {"dataset": "Y"}])
    assert chosen["rows"] == {"X/A": ["X/A0", "X/A1", "Y/A0", "Y/A1"], "Y/B": ["Y/A0", "Y/A1", "Y/B"]}
    with pytest.raises(ValueError, match="1 selections for a table of 2 rows"):
        cell_lineage(table, ["dataset", "method"], values, [{"method": "A"}])
