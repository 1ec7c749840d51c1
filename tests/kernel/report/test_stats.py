"""Paired Wilcoxon tests with Bonferroni correction, on scores in the long format."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from medrepro.errors import DataError
from medrepro.report.stats import RESULT_COLUMNS, paired_wilcoxon, signed_rank_test, wilcoxon_lineage


def make_per_pair(values: dict[str, list[float]], dataset: str = "JSRT", metric: str = "dsc") -> pd.DataFrame:
    """The long format: one row per (method, case), every method run once (seed NaN)."""
    rows = []
    for method, column in values.items():
        for i, value in enumerate(column):
            rows.append({"dataset": dataset, "method": method, "seed": np.nan, "case": f"m{i}|f{i}", metric: value,
                         "source": f"{method}.csv"})
    return pd.DataFrame(rows)


def test_matches_direct_scipy_call():
    rng = np.random.default_rng(0)
    a = rng.normal(0.9, 0.02, 30)
    b = a - rng.normal(0.01, 0.01, 30)
    c = rng.normal(0.85, 0.05, 30)
    table = paired_wilcoxon(make_per_pair({"A": a, "B": b, "C": c}), metrics=("dsc",))
    assert list(table.columns) == RESULT_COLUMNS and RESULT_COLUMNS[0] == "metric"  # no group asked for
    assert list(zip(table.method_a, table.method_b)) == [("A", "B"), ("A", "C"), ("B", "C")]
    for row in table.itertuples():
        x = {"A": a, "B": b, "C": c}[row.method_a]
        y = {"A": a, "B": b, "C": c}[row.method_b]
        expected = wilcoxon(x, y, zero_method="wilcox", alternative="two-sided")
        assert row.statistic == pytest.approx(expected.statistic)
        assert row.p_value == pytest.approx(expected.pvalue, rel=1e-12)
        assert row.p_bonferroni == pytest.approx(min(1.0, 3 * expected.pvalue))
        assert row.median_diff == pytest.approx(np.median(x - y))
        assert row.n_pairs == 30 and row.n_comparisons == 3


def test_hand_made_example_exact_distribution():
    # differences 1, 2, -3, 4, 5: W+ = 1+2+4+5 = 12, W- = 3 -> statistic min = 3.
    # Exact two-sided p: P(W <= 3) * 2 with 2^5 = 32 sign patterns; sums <= 3 are
    # {}, {1}, {2}, {3}, {1,2} -> 5 patterns, p = 2 * 5 / 32 = 0.3125.
    a = [11.0, 12.0, 7.0, 14.0, 15.0]
    b = [10.0] * 5
    table = paired_wilcoxon(make_per_pair({"A": a, "B": b}, metric="hd"), metrics=("hd",))
    row = table.iloc[0]
    assert row.statistic == 3.0
    assert row.p_value == pytest.approx(0.3125)
    assert row.p_bonferroni == pytest.approx(0.3125)  # a single comparison
    assert row.median_diff == 2.0


def test_zero_differences_are_dropped_before_ranking():
    a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    b = [1.0, 2.0, 2.5, 3.0, 6.5, 5.0, 5.0]  # two zero differences
    row = paired_wilcoxon(make_per_pair({"A": a, "B": b}), metrics=("dsc",)).iloc[0]
    nonzero = np.array(a)[2:] - np.array(b)[2:]
    expected = wilcoxon(nonzero)
    assert row.p_value == pytest.approx(expected.pvalue)
    assert row.n_pairs == 7


def test_all_zero_differences_give_p_one():
    assert signed_rank_test(np.zeros(6)) == (0.0, 1.0)
    row = paired_wilcoxon(make_per_pair({"A": [0.5, 0.6, 0.7], "B": [0.5, 0.6, 0.7]}), metrics=("dsc",)).iloc[0]
    assert row.p_value == 1.0 and row.p_bonferroni == 1.0


def test_bonferroni_is_capped_at_one_and_counts_pairs_per_dataset_metric():
    rng = np.random.default_rng(1)
    values = {m: rng.normal(0, 1, 8) for m in "ABCD"}
    table = paired_wilcoxon(make_per_pair(values), metrics=("dsc",))
    assert (table.n_comparisons == 6).all()
    assert (table.p_bonferroni <= 1.0).all()
    np.testing.assert_allclose(table.p_bonferroni, np.minimum(1.0, 6 * table.p_value))


def test_pairs_are_matched_on_the_case_and_nan_dropped():
    a = make_per_pair({"A": [1.0, 2.0, 3.0, np.nan, 5.0, 6.0]})
    b = make_per_pair({"B": [0.0, 0.5, 1.0, 1.0, 2.0, 9.0]}).iloc[::-1]  # shuffled rows
    row = paired_wilcoxon(pd.concat([a, b]), metrics=("dsc",)).iloc[0]
    assert row.n_pairs == 5
    expected = wilcoxon([1.0, 2.0, 3.0, 5.0, 6.0], [0.0, 0.5, 1.0, 2.0, 9.0])
    assert row.p_value == pytest.approx(expected.pvalue)


def test_datasets_and_metrics_are_separate_families():
    rng = np.random.default_rng(2)
    frames = []
    for dataset in ("JSRT", "Shenzhen"):
        frame = make_per_pair({m: rng.normal(0, 1, 10) for m in "ABC"}, dataset=dataset)
        frame["hd"] = rng.normal(10, 1, len(frame))
        frames.append(frame)
    table = paired_wilcoxon(pd.concat(frames), metrics=("dsc", "hd"), groups=("dataset",),
                            methods_order=["C", "B", "A"])
    assert list(table.columns) == ["dataset", *RESULT_COLUMNS]
    assert len(table) == 2 * 2 * 3
    assert table.groupby(["dataset", "metric"]).size().eq(3).all()
    assert list(table.method_a[:3]) == ["C", "C", "B"]


def test_missing_column_and_duplicates_raise_data_error():
    with pytest.raises(DataError, match="pairs.csv.*assd"):
        paired_wilcoxon(make_per_pair({"A": [1.0]}), metrics=("dsc", "assd"), source="pairs.csv")
    with pytest.raises(DataError, match="pairs.csv.*group"):
        paired_wilcoxon(make_per_pair({"A": [1.0]}), metrics=("dsc",), groups=("group",), source="pairs.csv")
    twice = pd.concat([make_per_pair({"A": [1.0]}), make_per_pair({"A": [2.0]})])
    with pytest.raises(DataError, match="more than one row"):
        paired_wilcoxon(twice, metrics=("dsc",))


def test_the_metrics_are_named_by_the_caller():
    with pytest.raises(TypeError, match="metrics"):
        paired_wilcoxon(make_per_pair({"A": [1.0], "B": [2.0]}))  # no default metric


def test_each_case_is_first_averaged_over_the_seeds():
    rng = np.random.default_rng(3)
    baseline = rng.uniform(0, 1, 12)
    seeded = rng.uniform(0, 1, (3, 12))
    frames = [make_per_pair({"B": baseline})]
    for seed, values in enumerate(seeded):
        frames.append(make_per_pair({"A": values}).assign(seed=seed))
    row = paired_wilcoxon(pd.concat(frames), metrics=("dsc",), methods_order=["A", "B"]).iloc[0]
    expected = wilcoxon(seeded.mean(axis=0), baseline, zero_method="wilcox")
    assert row.n_pairs == 12 and row.p_value == pytest.approx(expected.pvalue, rel=1e-12)
    assert row.statistic == pytest.approx(expected.statistic)


def test_tied_differences_match_scipy():
    a = [3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    b = [2.0, 3.0, 4.0, 4.0, 9.0, 7.0, 7.0, 7.5]  # |differences| 1, 1, 1, 2, 2, 1, 2, 2.5: tied ranks
    row = paired_wilcoxon(make_per_pair({"A": a, "B": b}), metrics=("dsc",)).iloc[0]
    expected = wilcoxon(a, b, zero_method="wilcox")
    assert row.statistic == pytest.approx(expected.statistic)
    assert row.p_value == pytest.approx(expected.pvalue, rel=1e-12)
    assert row.median_diff == pytest.approx(np.median(np.subtract(a, b)))


def test_a_single_pair():
    row = paired_wilcoxon(make_per_pair({"A": [0.9], "B": [0.8]}), metrics=("dsc",)).iloc[0]
    expected = wilcoxon([0.9], [0.8], zero_method="wilcox")
    assert row.n_pairs == 1 and row.median_diff == pytest.approx(0.1)
    assert row.statistic == pytest.approx(expected.statistic) and row.p_value == pytest.approx(expected.pvalue)
    nothing = paired_wilcoxon(make_per_pair({"A": [0.9], "B": [np.nan]}), metrics=("dsc",)).iloc[0]
    assert nothing.n_pairs == 0 and np.isnan(nothing.p_value) and np.isnan(nothing.p_bonferroni)


def test_lineage_traces_each_test_to_both_methods_files():
    values = pd.concat([make_per_pair({m: [1.0, 2.0, 3.0] for m in "ABC"}, dataset=d) for d in ("X", "Y")])
    values["source"] = values["dataset"] + "/" + values["method"] + ".csv"
    tests = paired_wilcoxon(values, metrics=("dsc",), groups=("dataset",))
    cells = wilcoxon_lineage(tests, values, groups=("dataset",))
    assert cells["key_columns"] == ["dataset", "metric", "method_a", "method_b"]
    assert len(cells["rows"]) == 6 and cells["rows"]["Y/dsc/A/C"] == ["Y/A.csv", "Y/C.csv"]
