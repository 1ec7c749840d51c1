"""Claims judged over seed replicates: the one-sided test, verdicts, chains, groups, lineage, the combined table."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from medrepro.report.claims import (
    CLAIM_COLUMNS, Claim, claims_lineage, claims_table_step, combine_claim_tables, judge_claim, judge_claims,
    metric_claims, one_sided_wilcoxon, replicate_seeds,
)
from medrepro.errors import DataError
from medrepro.pipeline.runner import Job, _Namespace


def values_frame(per_method: dict[str, np.ndarray | list], seeded: set[str]) -> pd.DataFrame:
    """Rows (method, seed, case, dsc): a seeded method's array is (n_seeds, n_cases), a seedless one's (n_cases,)."""
    rows = []
    for method, array in per_method.items():
        array = np.asarray(array, dtype=float)
        if method in seeded:
            for s, seed_values in enumerate(array):
                rows += [{"method": method, "seed": 10 + s, "case": f"c{i}", "dsc": v} for i, v in enumerate(seed_values)]
        else:
            rows += [{"method": method, "seed": np.nan, "case": f"c{i}", "dsc": v} for i, v in enumerate(array)]
    return pd.DataFrame(rows)


def claim(*order, higher=True, metric="dsc"):
    return Claim(study="s", label=" > ".join(order), metric=metric, order=tuple(order), higher_is_better=higher)


def test_replicate_seeds_start_at_the_config_seed():
    assert replicate_seeds(7, 3) == [7, 8, 9]
    assert replicate_seeds(0, 1) == [0]
    with pytest.raises(ValueError, match="at least 1"):
        replicate_seeds(0, 0)


def test_one_sided_wilcoxon_matches_scipy_and_handles_degenerate_input():
    rng = np.random.default_rng(0)
    d = rng.normal(0.01, 0.02, 25)
    assert one_sided_wilcoxon(d) == pytest.approx(wilcoxon(d, alternative="greater").pvalue, rel=1e-12)
    assert one_sided_wilcoxon(-d) == pytest.approx(wilcoxon(-d, alternative="greater").pvalue, rel=1e-12)
    assert one_sided_wilcoxon(np.zeros(5)) == 1.0
    assert one_sided_wilcoxon(np.array([])) == 1.0
    assert one_sided_wilcoxon(np.array([np.nan, np.nan])) == 1.0


def test_a_clear_improvement_holds_in_every_seed():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.7, 0.8, 30)
    a = base + 0.05 + rng.normal(0, 0.005, (3, 30))
    row = judge_claim(claim("A", "B"), values_frame({"A": a, "B": base}, seeded={"A"}))
    assert list(row) == CLAIM_COLUMNS
    assert (row["holds_in_seeds"], row["n_seeds"], row["verdict"]) == (3, 3, "holds")
    # p is the one-sided test over cases of the seed-averaged differences, computed independently
    expected = wilcoxon(a.mean(axis=0) - base, alternative="greater").pvalue
    assert row["p_value"] == pytest.approx(expected, rel=1e-12)


def test_lower_is_better_flips_the_direction():
    rng = np.random.default_rng(2)
    b = rng.uniform(10, 20, 30)
    a = b - 2 + rng.normal(0, 0.1, (2, 30))
    frame = values_frame({"A": a, "B": b}, seeded={"A"}).rename(columns={"dsc": "hd"})
    assert judge_claim(claim("A", "B", higher=False, metric="hd"), frame)["verdict"] == "holds"
    assert judge_claim(claim("B", "A", higher=False, metric="hd"), frame)["verdict"] == "contradicted"


def test_a_flip_between_seeds_is_inconclusive_even_when_pooled_p_is_small():
    rng = np.random.default_rng(3)
    base = rng.uniform(0.7, 0.8, 40)
    a = np.stack([base + 0.10, base - 0.01, base - 0.01]) + rng.normal(0, 0.001, (3, 40))
    row = judge_claim(claim("A", "B"), values_frame({"A": a, "B": base}, seeded={"A"}))
    assert row["holds_in_seeds"] == 1 and row["p_value"] < 0.05
    assert row["verdict"] == "inconclusive"


def test_no_difference_is_inconclusive_not_contradicted():
    rng = np.random.default_rng(4)
    a = rng.uniform(0.7, 0.8, (3, 20))
    b = a[:, rng.permutation(20)]
    row = judge_claim(claim("A", "B"), values_frame({"A": a, "B": b}, seeded={"A", "B"}))
    assert row["verdict"] in ("inconclusive",)


def test_a_chain_needs_every_step_and_keeps_the_largest_p():
    rng = np.random.default_rng(5)
    c = rng.uniform(0.7, 0.8, 30)
    b = c + 0.02 + rng.normal(0, 0.002, (3, 30))
    a = b + 0.02 + rng.normal(0, 0.002, (3, 30))
    frame = values_frame({"A": a, "B": b, "C": c}, seeded={"A", "B"})
    row = judge_claim(claim("A", "B", "C"), frame)
    assert row["verdict"] == "holds" and row["holds_in_seeds"] == 3
    p_ab = wilcoxon(a.mean(0) - b.mean(0), alternative="greater").pvalue
    p_bc = wilcoxon(b.mean(0) - c, alternative="greater").pvalue
    assert row["p_value"] == pytest.approx(max(p_ab, p_bc), rel=1e-12)
    # swap the last step: the chain fails in every seed
    swapped = judge_claim(claim("A", "C", "B"), frame)
    assert swapped["holds_in_seeds"] == 0 and swapped["verdict"] == "contradicted"


def test_cases_missing_for_a_method_are_left_out():
    rng = np.random.default_rng(6)
    b = rng.uniform(0.7, 0.8, 30)
    a = b + 0.05 + rng.normal(0, 0.001, (2, 30))
    frame = values_frame({"A": a, "B": b}, seeded={"A"})
    frame.loc[(frame.method == "B") & (frame.case == "c0"), "dsc"] = np.nan
    row = judge_claim(claim("A", "B"), frame)
    expected = wilcoxon((a.mean(0) - b)[1:], alternative="greater").pvalue
    assert row["p_value"] == pytest.approx(expected, rel=1e-12)


def test_bad_inputs_name_the_source():
    frame = values_frame({"A": np.ones((2, 3)), "B": np.ones(3)}, seeded={"A"})
    with pytest.raises(DataError, match="scores.csv.*method\\(s\\) \\['C'\\]"):
        judge_claim(claim("A", "C"), frame, source="scores.csv")
    with pytest.raises(DataError, match="no method has a seed"):
        judge_claim(claim("A", "B"), values_frame({"A": np.ones(3), "B": np.ones(3)}, seeded=set()))
    twice = pd.concat([frame, frame[frame.method == "A"].iloc[:1]])
    with pytest.raises(DataError, match="more than one"):
        judge_claim(claim("A", "B"), twice)
    with pytest.raises(ValueError, match="two or more distinct"):
        claim("A", "A")


def test_combined_table_keeps_columns_and_rejects_unknown_verdicts():
    rng = np.random.default_rng(7)
    b = rng.uniform(0.7, 0.8, 10)
    frame = values_frame({"A": b + 0.1 + rng.normal(0, 0.01, (2, 10)), "B": b}, seeded={"A"})
    table = judge_claims([claim("A", "B"), claim("B", "A")], frame)
    both = combine_claim_tables([table, table.assign(study="t")])
    assert list(both.columns) == CLAIM_COLUMNS and len(both) == 4
    with pytest.raises(DataError, match="unknown verdict"):
        combine_claim_tables([table.assign(verdict="maybe")], source="claims.csv")


def test_metric_claims_keep_orders_whose_methods_ran_on_every_metric():
    claims = metric_claims("s", [("A", "B"), ("A", "C"), ("B", "A")], {"dsc": True, "hd": False}, ["A", "B"],
                           where={"dataset": "X"}, label_prefix="X: ")
    assert [(c.label, c.metric, c.higher_is_better) for c in claims] == [
        ("X: A > B", "dsc", True), ("X: A > B", "hd", False), ("X: B > A", "dsc", True), ("X: B > A", "hd", False)]
    assert all(c.study == "s" and c.where == {"dataset": "X"} for c in claims)
    assert metric_claims("s", [("A", "B")], {"dsc": True}, ["A"]) == []


def test_a_claim_about_one_group_is_judged_on_that_group_only():
    rng = np.random.default_rng(8)
    b = rng.uniform(0.7, 0.8, 20)
    better = values_frame({"A": b + 0.1 + rng.normal(0, 0.01, (2, 20)), "B": b}, seeded={"A"})
    worse = values_frame({"A": b - 0.1 + rng.normal(0, 0.01, (2, 20)), "B": b}, seeded={"A"})
    frame = pd.concat([better.assign(dataset="X"), worse.assign(dataset="Y")], ignore_index=True)
    on_x = Claim(study="s", label="X: A > B", metric="dsc", order=("A", "B"), higher_is_better=True,
                 where={"dataset": "X"})
    on_y = dataclasses.replace(on_x, label="Y: A > B", where={"dataset": "Y"})
    assert judge_claim(on_x, frame) == judge_claim(dataclasses.replace(on_x, where={}), better)
    assert judge_claim(on_y, frame)["verdict"] == "contradicted"
    with pytest.raises(DataError, match=r"scores\.csv \(dataset = Z\).*no scores"):
        judge_claim(dataclasses.replace(on_x, where={"dataset": "Z"}), frame, source="scores.csv")
    with pytest.raises(DataError, match="missing column.*'dataset'"):
        judge_claim(on_x, better)


def test_claims_lineage_traces_each_claim_to_its_methods_files():
    rng = np.random.default_rng(9)
    b = rng.uniform(0.7, 0.8, 10)
    frame = values_frame({"A": b + rng.normal(0, 0.01, (2, 10)), "B": b, "C": b}, seeded={"A"})
    frame["source"] = [f"{m}{'' if np.isnan(s) else int(s)}.csv" for m, s in zip(frame["method"], frame["seed"])]
    claims = [claim("A", "B"), claim("C", "B")]
    cells = claims_lineage(claims, judge_claims(claims, frame), frame)
    assert cells == {"key_columns": ["study", "claim", "metric"],
                     "rows": {"s/A > B/dsc": ["A10.csv", "A11.csv", "B.csv"], "s/C > B/dsc": ["B.csv", "C.csv"]}}


def test_the_claims_rule_gathers_every_studys_file_and_traces_rows_to_it(tmp_path):
    rng = np.random.default_rng(10)
    b = rng.uniform(0.7, 0.8, 10)
    table = judge_claims([claim("A", "B")], values_frame({"A": b + 0.1 + rng.normal(0, 0.01, (2, 10)), "B": b},
                                                         seeded={"A"}))
    table.to_csv(tmp_path / "s.csv", index=False)
    table.assign(study="t", p_value=1 / 3).to_csv(tmp_path / "t.csv", index=False)
    job = Job(rule="claims", input=_Namespace(s=str(tmp_path / "s.csv"), t=str(tmp_path / "t.csv")),
              output=_Namespace(csv=str(tmp_path / "claims.csv")), params=_Namespace())
    claims_table_step(job)
    assert (tmp_path / "claims.csv").read_text().splitlines()[2].split(",")[5] == "0.333333"  # six digits
    assert job.cells == {"key_columns": ["study", "claim", "metric"],
                         "rows": {"s/A > B/dsc": [str(tmp_path / "s.csv")], "t/A > B/dsc": [str(tmp_path / "t.csv")]}}


def group_frame(per_method: dict[str, np.ndarray], seeds: int = 3) -> pd.DataFrame:
    """Rows (method, seed, case, error) where each method has cases of its own (named after the method)."""
    rows = []
    for method, array in per_method.items():
        array = np.asarray(array, dtype=float).reshape(seeds, -1)
        for s in range(seeds):
            rows += [{"method": method, "seed": s, "case": f"{method}-{i}", "error": v}
                     for i, v in enumerate(array[s])]
    return pd.DataFrame(rows)


def test_an_unpaired_claim_compares_each_methods_own_cases_with_a_rank_sum_test():
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(11)
    hard = (rng.random((3, 40)) < 0.6).astype(float)
    easy = (rng.random((3, 60)) < 0.1).astype(float)
    frame = group_frame({"C3": hard, "C1": easy})
    worst = Claim("s", "C3 hardest", "error", ("C3", "C1"), higher_is_better=True, paired=False)
    row = judge_claim(worst, frame)
    assert (row["holds_in_seeds"], row["verdict"]) == (3, "holds")
    expected = mannwhitneyu(hard.mean(0), easy.mean(0), alternative="greater").pvalue
    assert row["p_value"] == pytest.approx(expected, rel=1e-12)
    # the same frame judged as a paired claim has no case in common: nothing to compare
    with pytest.raises(DataError, match="no case has a value for every method"):
        judge_claim(dataclasses.replace(worst, paired=True), frame)
    reverse = judge_claim(Claim("s", "C1 hardest", "error", ("C1", "C3"), True, paired=False), frame)
    assert (reverse["holds_in_seeds"], reverse["verdict"]) == (0, "contradicted")


def test_versus_each_needs_the_first_to_beat_every_other_and_keeps_the_largest_p():
    rng = np.random.default_rng(12)
    groups = {"C3": (rng.random((3, 50)) < 0.5), "C1": (rng.random((3, 50)) < 0.1),
              "C2": (rng.random((3, 50)) < 0.2), "C4": (rng.random((3, 50)) < 0.05)}
    frame = group_frame({k: v.astype(float) for k, v in groups.items()})
    hardest = Claim("s", "C3 hardest", "error", ("C3", "C1", "C2", "C4"), True, paired=False, versus="each")
    assert hardest.steps() == [("C3", "C1"), ("C3", "C2"), ("C3", "C4")]
    row = judge_claim(hardest, frame)
    assert row["verdict"] == "holds" and row["holds_in_seeds"] == 3
    from medrepro.report.claims import one_sided_mann_whitney
    means = {k: v.astype(float).mean(0) for k, v in groups.items()}
    assert row["p_value"] == pytest.approx(max(one_sided_mann_whitney(means["C3"], means[o])
                                               for o in ("C1", "C2", "C4")), rel=1e-12)
    # C2 is not the hardest: it loses to C3 in every seed
    not_hardest = judge_claim(Claim("s", "C2 hardest", "error", ("C2", "C1", "C3", "C4"), True, paired=False,
                                    versus="each"), frame)
    assert not_hardest["holds_in_seeds"] == 0 and not_hardest["verdict"] == "contradicted"
    with pytest.raises(ValueError, match="versus"):
        Claim("s", "x", "error", ("a", "b"), True, versus="all")


def test_one_sided_mann_whitney_handles_degenerate_input():
    from medrepro.report.claims import one_sided_mann_whitney

    assert one_sided_mann_whitney(np.array([]), np.array([1.0])) == 1.0
    assert one_sided_mann_whitney(np.ones(4), np.ones(6)) == 1.0
    assert one_sided_mann_whitney(np.array([np.nan]), np.array([0.0])) == 1.0
