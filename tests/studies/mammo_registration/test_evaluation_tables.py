"""Per-pair box scores, the registration table, its renderings and the paired Wilcoxon tests."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from medrepro.errors import DataError
from medrepro.studies.mammo_registration.evaluation import (
    EVAL_COLUMNS,
    read_scores,
    score_pair,
    score_pairs,
    write_scores,
)
from medrepro.studies.mammo_registration.tables import (
    TABLE_COLUMNS,
    display_method,
    long_scores,
    registration_table,
    render_latex,
    render_markdown,
    wilcoxon_table,
)
from medrepro.report.tables import write_table

METHODS = ["unregistered", "prior", "elastix", "mse", "masked_mse", "masked_mse_giou"]


# --- score_pair against hand computations -------------------------------------------------------


def test_identical_boxes_score_perfectly():
    row = score_pair("P_00001_LEFT", np.array([10, 20, 50, 60]), np.array([10, 20, 50, 60]), 0.25)
    assert list(row) == EVAL_COLUMNS
    assert row["iou"] == 1.0 and row["giou_loss"] == 0.0 and row["overlap"] == 1
    assert row["centre_distance_px"] == 0.0 and row["masked_mse"] == 0.25
    assert isinstance(row["overlap"], int) and all(isinstance(row[c], float) for c in EVAL_COLUMNS[1:] if c != "overlap")
    assert (row["mlo_x1"], row["cc_y2"]) == (10.0, 60.0)


def test_disjoint_boxes_do_not_overlap_and_lose_more_than_one():
    # a = [0,10]x[0,10], b = [20,30]x[0,10]: U = 200, C = 30 * 10 = 300, GIoU loss = 2 - U/C = 4/3.
    row = score_pair("p", np.array([0, 0, 10, 10]), np.array([20, 0, 30, 10]), 1.0)
    assert row["overlap"] == 0 and row["iou"] == 0.0
    assert row["giou_loss"] > 1.0
    assert row["giou_loss"] == pytest.approx(2.0 - 200.0 / 300.0)
    assert row["centre_distance_px"] == pytest.approx(20.0)


def test_known_offset_by_hand():
    # a = [0,10]x[0,10], b = [5,15]x[3,13]: I = 5 * 7 = 35, U = 165, C = 15 * 13 = 195.
    row = score_pair("p", np.array([0.0, 0.0, 10.0, 10.0]), np.array([5.0, 3.0, 15.0, 13.0]), 0.0)
    iou = 35.0 / 165.0
    assert row["iou"] == pytest.approx(iou)
    assert row["giou_loss"] == pytest.approx(1.0 - (iou - (195.0 - 165.0) / 195.0))
    assert row["overlap"] == 1
    assert row["centre_distance_px"] == pytest.approx(np.hypot(5.0, 3.0))


def test_touching_boxes_do_not_overlap():
    row = score_pair("p", np.array([0, 0, 10, 10]), np.array([10, 0, 20, 10]), 0.0)
    assert row["overlap"] == 0 and row["giou_loss"] == pytest.approx(1.0)


def test_score_pairs_matches_score_pair_rowwise():
    rng = np.random.default_rng(3)
    corner = rng.uniform(0, 500, size=(20, 2, 2))
    size = rng.uniform(1, 80, size=(20, 2, 2))
    mlo = np.concatenate([corner[:, 0], corner[:, 0] + size[:, 0]], axis=1)
    cc = np.concatenate([corner[:, 1], corner[:, 1] + size[:, 1]], axis=1)
    mse = rng.uniform(0, 1, 20)
    names = [f"pair{i:02d}" for i in range(20)]
    frame = score_pairs(names, mlo, cc, mse)
    assert list(frame.columns) == EVAL_COLUMNS and frame["overlap"].dtype.kind == "i"
    for i in range(20):
        expected = score_pair(names[i], mlo[i], cc[i], mse[i])
        for column in EVAL_COLUMNS[1:]:
            assert frame[column].iloc[i] == pytest.approx(expected[column])


@pytest.mark.parametrize("mlo, cc, message", [
    ([0, 0, 10], [0, 0, 10, 10], "shape"),
    ([0, 0, 10, np.nan], [0, 0, 10, 10], "non-finite"),
    ([10, 0, 0, 10], [0, 0, 10, 10], "x2 < x1"),
])
def test_score_pair_rejects_malformed_boxes(mlo, cc, message):
    with pytest.raises(ValueError, match=message):
        score_pair("p", np.array(mlo, dtype=float), np.array(cc, dtype=float), 0.0)


def test_score_pairs_rejects_repeated_names():
    box = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], dtype=float)
    with pytest.raises(ValueError, match="unique"):
        score_pairs(["a", "a"], box, box, [0.0, 0.0])


def test_scores_round_trip_and_bad_files(tmp_path):
    frame = score_pairs(["a", "b"], np.array([[0, 0, 10, 10]] * 2), np.array([[0, 0, 10, 10], [20, 0, 30, 5]]),
                        [0.1, 0.2])
    path = tmp_path / "eval" / "mse.csv"
    write_scores(frame, path)
    back = read_scores(path)
    pd.testing.assert_frame_equal(back, frame)
    with pytest.raises(DataError, match="not found"):
        read_scores(tmp_path / "missing.csv")
    frame.drop(columns="iou").to_csv(tmp_path / "no_iou.csv", index=False)
    with pytest.raises(DataError, match=r"no_iou\.csv.*iou"):
        read_scores(tmp_path / "no_iou.csv")


# --- The table against NumPy on random per-pair frames -----------------------------------------


def random_scores(rng: np.random.Generator, n_pairs: int = 15, seeds=(None,)) -> pd.DataFrame:
    frames = []
    for seed in seeds:
        frame = pd.DataFrame({
            "pair": [f"P{i:03d}" for i in range(n_pairs)],
            "iou": rng.uniform(0, 1, n_pairs),
            "giou_loss": rng.uniform(0, 2, n_pairs),
            "overlap": rng.integers(0, 2, n_pairs),
            "centre_distance_px": rng.uniform(0, 100, n_pairs),
            "masked_mse": rng.uniform(0, 0.1, n_pairs),
        })
        if seed is not None:
            frame["seed"] = seed
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def test_table_statistics_match_numpy():
    rng = np.random.default_rng(0)
    frames = {m: random_scores(rng) for m in ["masked_mse_giou", "unregistered"]}
    table = registration_table(long_scores(frames))
    assert list(table.columns) == TABLE_COLUMNS
    assert list(table.columns[:9]) == ["method", "n_pairs", "overlap_rate", "giou_loss_mean", "giou_loss_median",
                                       "giou_loss_sd", "iou_mean", "centre_distance_median_px", "masked_mse_mean"]
    for record in table.to_dict("records"):
        f = frames[record["method"]]
        g = f["giou_loss"].to_numpy()
        assert record["n_pairs"] == 15 and record["n_seeds"] == 1 and np.isnan(record["overlap_rate_seed_sd"])
        assert record["overlap_rate"] == pytest.approx(np.sum(f["overlap"].to_numpy()) / 15)
        assert record["giou_loss_mean"] == pytest.approx(np.mean(g))
        assert record["giou_loss_median"] == pytest.approx(np.median(g))
        assert record["giou_loss_sd"] == pytest.approx(np.std(g, ddof=1))
        assert record["iou_mean"] == pytest.approx(np.mean(f["iou"].to_numpy()))
        assert record["centre_distance_median_px"] == pytest.approx(np.median(f["centre_distance_px"].to_numpy()))
        assert record["masked_mse_mean"] == pytest.approx(np.mean(f["masked_mse"].to_numpy()))


def test_method_order_is_given_order_then_unlisted_sorted():
    rng = np.random.default_rng(1)
    frames = {m: random_scores(rng, 5) for m in ["zeta", "masked_mse_giou", "alpha", "unregistered", "mse"]}
    table = registration_table(long_scores(frames))
    assert table["method"].tolist() == ["unregistered", "mse", "masked_mse_giou", "alpha", "zeta"]
    custom = registration_table(long_scores(frames), methods_order=["mse", "zeta"])
    assert custom["method"].tolist() == ["mse", "zeta", "alpha", "masked_mse_giou", "unregistered"]


def test_seeds_mean_over_seeds_and_seed_sd():
    rng = np.random.default_rng(2)
    learned = random_scores(rng, 11, seeds=(0, 1, 2)).sample(frac=1.0, random_state=0)  # order must not matter
    frames = {"unregistered": random_scores(rng, 11), "masked_mse_giou": learned}
    table = registration_table(long_scores(frames)).set_index("method")
    row = table.loc["masked_mse_giou"]
    per_seed = [learned[learned["seed"] == s] for s in (0, 1, 2)]
    rates = np.array([s["overlap"].mean() for s in per_seed])
    assert row["n_seeds"] == 3 and row["n_pairs"] == 11
    assert row["overlap_rate"] == pytest.approx(rates.mean())
    assert row["overlap_rate_seed_sd"] == pytest.approx(np.std(rates, ddof=1))
    assert row["giou_loss_median"] == pytest.approx(np.mean([np.median(s["giou_loss"]) for s in per_seed]))
    assert row["giou_loss_sd"] == pytest.approx(np.mean([np.std(s["giou_loss"], ddof=1) for s in per_seed]))
    assert row["centre_distance_median_px"] == pytest.approx(
        np.mean([np.median(s["centre_distance_px"]) for s in per_seed]))
    assert table.loc["unregistered", "n_seeds"] == 1 and np.isnan(table.loc["unregistered", "overlap_rate_seed_sd"])
    # A seedless method may carry an all-NaN seed column.
    nan_seed = frames["unregistered"].assign(seed=np.nan)
    again = registration_table(long_scores({"unregistered": nan_seed})).iloc[0]
    assert again["n_seeds"] == 1 and again["overlap_rate"] == pytest.approx(table.loc["unregistered", "overlap_rate"])


def test_seeds_on_different_pairs_are_an_error():
    rng = np.random.default_rng(4)
    learned = random_scores(rng, 6, seeds=(0, 1))
    learned = learned.drop(index=learned.index[-1])
    with pytest.raises(DataError, match=r"eval/mse\.csv.*different test pairs"):
        registration_table(long_scores({"mse": learned}, sources={"mse": "eval/mse.csv"}))


def test_long_scores_of_every_method_with_seeds_cases_and_files():
    untrained = pd.DataFrame({"pair": ["a", "b"], "overlap": [1, 0], "giou_loss": [0.5, 1.5], "iou": [0.6, 0.0],
                              "centre_distance_px": [3.0, 40.0], "masked_mse": [0.1, 0.2]})
    trained = pd.DataFrame({"pair": [1, 2, 1, 2], "seed": [0, 0, 1, 1], "overlap": [1, 1, 0, 1],
                            "giou_loss": [0.1, 0.2, 1.1, 0.3], "iou": [0.9, 0.8, 0.0, 0.7],
                            "centre_distance_px": [1.0, 2.0, 30.0, 4.0], "masked_mse": [0.01, 0.02, 0.3, 0.04]})
    values = long_scores({"unregistered": untrained, "masked_mse_giou": trained},
                         sources={"unregistered": "eval/unregistered.csv"})
    assert list(values.columns) == ["method", "seed", "case", "iou", "giou_loss", "overlap", "centre_distance_px",
                                    "masked_mse", "source"]
    assert values["method"].tolist() == ["unregistered"] * 2 + ["masked_mse_giou"] * 4
    assert values["seed"][:2].isna().all() and values["seed"][2:].tolist() == [0, 0, 1, 1]
    assert values["case"].tolist() == ["a", "b", "1", "2", "1", "2"]  # cases are names, as strings
    assert values["overlap"].dtype == float and values["giou_loss"].tolist() == [0.5, 1.5, 0.1, 0.2, 1.1, 0.3]
    assert values["source"].tolist() == ["eval/unregistered.csv"] * 2 + ["per-pair scores of method "
                                                                         "'masked_mse_giou'"] * 4


@pytest.mark.parametrize("table_function", [registration_table, wilcoxon_table])
def test_bad_input_names_the_source(table_function):
    """Each method's frame is checked as it enters the long format, which both tables read."""
    rng = np.random.default_rng(5)
    good = random_scores(rng, 6)
    sources = {"mse": "results/eval/mse.csv", "prior": "results/eval/prior.csv"}
    with pytest.raises(DataError, match=r"results/eval/mse\.csv.*giou_loss"):
        table_function(long_scores({"prior": good, "mse": good.drop(columns="giou_loss")}, sources=sources))
    duplicated = pd.concat([good, good.iloc[[2]]], ignore_index=True)
    with pytest.raises(DataError, match=r"results/eval/prior\.csv.*P002"):
        table_function(long_scores({"prior": duplicated, "mse": good}, sources=sources))
    with pytest.raises(DataError, match=r"method 'mse'.*non-finite"):
        table_function(long_scores({"mse": good.assign(masked_mse=np.nan)}))
    with pytest.raises(DataError, match="overlap"):
        table_function(long_scores({"mse": good.assign(overlap=2)}))
    with pytest.raises(DataError, match="no method"):
        table_function(long_scores({}))
    with pytest.raises(DataError, match="more than one row"):
        table_function(pd.concat([long_scores({"mse": good})] * 2))  # the tables check the long format too


# --- Wilcoxon against scipy directly -----------------------------------------------------------


def test_wilcoxon_matches_scipy_with_bonferroni():
    rng = np.random.default_rng(6)
    frames = {m: random_scores(rng, 20) for m in ["masked_mse_giou", "unregistered", "mse"]}
    frames["mse"] = frames["mse"].iloc[::-1].reset_index(drop=True)  # pairs are matched by name, not by row
    tests = wilcoxon_table(long_scores(frames))
    order = ["unregistered", "mse", "masked_mse_giou"]
    expected_pairs = list(itertools.combinations(order, 2))
    assert len(tests) == 2 * len(expected_pairs)
    for metric in ("giou_loss", "centre_distance_px"):
        block = tests[tests["metric"] == metric]
        assert list(zip(block["method_a"], block["method_b"])) == expected_pairs
        for record in block.to_dict("records"):
            a = frames[record["method_a"]].set_index("pair")[metric]
            b = frames[record["method_b"]].set_index("pair")[metric].reindex(a.index)
            reference = wilcoxon(a.to_numpy() - b.to_numpy())
            assert record["n_pairs"] == 20 and record["n_comparisons"] == 3
            assert record["statistic"] == pytest.approx(reference.statistic)
            assert record["p_value"] == pytest.approx(reference.pvalue)
            assert record["p_bonferroni"] == pytest.approx(min(1.0, 3 * reference.pvalue))
            assert record["median_diff"] == pytest.approx(np.median(a.to_numpy() - b.to_numpy()))


def test_wilcoxon_uses_each_pairs_mean_over_seeds():
    rng = np.random.default_rng(7)
    learned = random_scores(rng, 12, seeds=(0, 1, 2))
    baseline = random_scores(rng, 12)
    tests = wilcoxon_table(long_scores({"unregistered": baseline, "masked_mse_giou": learned}))
    record = tests[tests["metric"] == "giou_loss"].iloc[0]
    a = baseline.set_index("pair")["giou_loss"]
    b = learned.groupby("pair")["giou_loss"].mean().reindex(a.index)
    reference = wilcoxon(a.to_numpy() - b.to_numpy())
    assert (record["method_a"], record["method_b"]) == ("unregistered", "masked_mse_giou")
    assert record["p_value"] == pytest.approx(reference.pvalue) and record["n_comparisons"] == 1


# --- Renderings --------------------------------------------------------------------------------


def test_renderings_name_every_method_and_the_paper_rate(tmp_path):
    rng = np.random.default_rng(8)
    frames = {m: random_scores(rng, 9, seeds=(0, 1, 2) if m not in ("unregistered", "elastix") else (None,))
              for m in METHODS}
    table = registration_table(long_scores(frames))
    ours = table.set_index("method").loc["masked_mse_giou", "overlap_rate"]
    markdown, latex = render_markdown(table), render_latex(table)
    for method in METHODS:
        assert display_method(method) in markdown
        assert display_method(method) in latex
    assert "66.7%" in markdown and r"66.7\%" in latex
    assert f"ours: {100 * ours:.1f}%" in markdown
    assert "3 seeds" in markdown
    assert markdown.count("\n|") == len(METHODS) + 1  # header rule + one row per method
    assert latex.count(r"\\") == len(METHODS) + 1
    assert "%" not in latex.replace(r"\%", "")  # every percent sign escaped
    missing = render_markdown(table[table["method"] != "masked_mse_giou"])
    assert "66.7%" in missing and "not in this table" in missing
    write_table(table, tmp_path / "t.csv", renderings=[(tmp_path / "t.md", render_markdown),
                                                       (tmp_path / "t.tex", render_latex)])
    write_table(wilcoxon_table(long_scores(frames)), tmp_path / "w.csv")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "t.csv", float_precision="round_trip"), table, check_dtype=False, check_exact=True)
    assert (tmp_path / "t.md").read_text() == markdown and (tmp_path / "t.tex").read_text() == latex
    assert len(pd.read_csv(tmp_path / "w.csv")) == 2 * 15


# --- The report steps: every row traced to the per-pair files behind it -------------------------


@pytest.mark.parametrize("step, row, methods", [
    ("registration_table", "masked_mse_giou", ["masked_mse_giou"]),
    ("registration_wilcoxon", "giou_loss/unregistered/masked_mse", ["unregistered", "masked_mse"]),
    ("claims", "mammo_registration/masked_mse_giou > masked_mse/overlap", ["masked_mse_giou", "masked_mse"]),
])
def test_report_steps_trace_each_row_to_its_per_pair_files(tmp_path, step, row, methods):
    from medrepro.pipeline.runner import Job, _Namespace, execute
    from medrepro.studies.mammo_registration import steps

    rng = np.random.default_rng(9)
    inputs = {}
    for method in ("unregistered", "masked_mse", "masked_mse_giou"):
        inputs[method] = str(tmp_path / "eval" / f"{method}.csv")
        write_scores(random_scores(rng, 8, seeds=(None,) if method == "unregistered" else (0, 1)), inputs[method])
    outputs = {"csv": str(tmp_path / "t.csv"), "markdown": str(tmp_path / "t.md"), "latex": str(tmp_path / "t.tex")}
    job = Job(rule=step, input=_Namespace(inputs), output=_Namespace(outputs), params=_Namespace(),
              provenance_dir=str(tmp_path / "prov"))
    execute(job, getattr(steps, step))
    assert sorted(job.cells["rows"][row]) == sorted(inputs[m] for m in methods)
    assert len(job.cells["rows"]) == len(pd.read_csv(tmp_path / "t.csv"))
