"""From registration matrices to per-pair scores, and from per-pair scores to the paper's judged claims.

Matrices are pixel affines of :mod:`medrepro.spatial.warp` (an MLO-grid position ->
the CC position it samples); boxes are (x1, y1, x2, y2) with the far edge
exclusive. The expected masked MSE is worked out with NumPy on integer
shifts, where bilinear sampling at pixel centres is exact. The claims are
judged through :func:`medrepro.report.claims.judge_claims` on scores built so that
the verdict is known in advance.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medrepro.report.claims import judge_claims
from medrepro.studies.mammo_registration.claims import METRIC_DIRECTIONS, ORDERS, STUDY, study_claims
from medrepro.studies.mammo_registration.evaluation import EVAL_COLUMNS, evaluate_matrices, identity_matrices
from medrepro.studies.mammo_registration.tables import long_scores

PAPER_METHODS = ["masked_mse_giou", "masked_mse", "mse", "unregistered"]


# ------------------------------------------------------------------------------------------------ evaluation


def toy_pairs() -> dict[str, np.ndarray]:
    """Three 12 x 10 pairs: identical boxes, disjoint boxes, and breast regions that do not meet."""
    rng = np.random.default_rng(0)
    cc = rng.uniform(size=(3, 12, 10)).astype(np.float32)
    mlo = rng.uniform(size=(3, 12, 10)).astype(np.float32)
    cc_region = np.zeros((3, 12, 10), dtype=bool)
    mlo_region = np.zeros((3, 12, 10), dtype=bool)
    cc_region[:2, 2:10, 3:10] = True
    mlo_region[:2, 0:8, 1:9] = True
    cc_region[2, :, :4], mlo_region[2, :, 6:] = True, True  # pair 3: no common pixel
    return {
        "pair": np.array(["a", "b", "c"]), "cc": cc, "mlo": mlo, "cc_region": cc_region, "mlo_region": mlo_region,
        "cc_box": np.array([[2, 3, 6, 7], [0, 0, 2, 2], [1, 1, 4, 5]], dtype=np.float32),
        "mlo_box": np.array([[2, 3, 6, 7], [5, 6, 9, 10], [1, 1, 4, 5]], dtype=np.float32),
    }


def masked_mse_by_hand(warped: np.ndarray, fixed: np.ndarray, mask: np.ndarray) -> float:
    return float(((warped - fixed)[mask] ** 2).mean()) if mask.any() else 0.0


def test_identity_matrices():
    matrices = identity_matrices(3)
    assert matrices.shape == (3, 2, 3) and matrices.dtype == np.float64
    np.testing.assert_array_equal(matrices, np.tile([[1.0, 0, 0], [0, 1.0, 0]], (3, 1, 1)))
    assert identity_matrices(0).shape == (0, 2, 3)


def test_identity_leaves_boxes_and_scores_the_overlap_mse():
    pairs = toy_pairs()
    scores = evaluate_matrices(pairs, identity_matrices(3))
    assert list(scores.columns) == EVAL_COLUMNS and scores["pair"].tolist() == ["a", "b", "c"]
    np.testing.assert_allclose(scores[["cc_x1", "cc_y1", "cc_x2", "cc_y2"]].to_numpy(), pairs["cc_box"])
    np.testing.assert_allclose(scores[["mlo_x1", "mlo_y1", "mlo_x2", "mlo_y2"]].to_numpy(), pairs["mlo_box"])
    for i in range(3):
        mask = pairs["cc_region"][i] & pairs["mlo_region"][i]
        expected = masked_mse_by_hand(pairs["cc"][i].astype(np.float64), pairs["mlo"][i], mask)
        assert scores["masked_mse"][i] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert scores["masked_mse"][2] == 0.0  # regions that never meet: nothing to compare
    # identical boxes; disjoint boxes (centres (1, 1) and (7, 8))
    assert scores["iou"].tolist()[::2] == [1.0, 1.0] and scores["giou_loss"][0] == pytest.approx(0.0, abs=1e-12)
    assert scores["overlap"].tolist() == [1, 0, 1]
    assert scores["iou"][1] == 0.0 and scores["giou_loss"][1] > 1.0
    assert scores["centre_distance_px"][1] == pytest.approx(np.hypot(6.0, 7.0))


def test_an_integer_shift_by_hand():
    """The matrix samples the CC 2 columns right and 1 row down of each MLO pixel."""
    pairs = toy_pairs()
    dx, dy = 2, 1
    matrix = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
    scores = evaluate_matrices(pairs, np.repeat(matrix[None], 3, axis=0))
    height, width = pairs["cc"].shape[1:]
    for i in range(3):
        warped = np.zeros((height, width))
        warped_region = np.zeros((height, width), dtype=bool)
        warped[: height - dy, : width - dx] = pairs["cc"][i][dy:, dx:]
        warped_region[: height - dy, : width - dx] = pairs["cc_region"][i][dy:, dx:]
        support = np.zeros((height, width), dtype=bool)
        support[: height - dy, : width - dx] = True  # the sampled centre lies inside the CC
        mask = support & warped_region & pairs["mlo_region"][i]
        assert scores["masked_mse"][i] == pytest.approx(masked_mse_by_hand(warped, pairs["mlo"][i], mask), rel=1e-6)
    # boxes move the other way: by the inverse shift
    np.testing.assert_allclose(scores[["cc_x1", "cc_y1", "cc_x2", "cc_y2"]].to_numpy(),
                               pairs["cc_box"] - np.array([dx, dy, dx, dy]), atol=1e-9)


def test_evaluate_matrices_rejects_bad_matrices():
    pairs = toy_pairs()
    with pytest.raises(ValueError, match="expected 3 matrices"):
        evaluate_matrices(pairs, identity_matrices(2))
    bad = identity_matrices(3)
    bad[1, 0, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        evaluate_matrices(pairs, bad)


# ---------------------------------------------------------------------------------------------------- claims


def test_all_claims_when_every_method_ran():
    claims = study_claims(PAPER_METHODS + ["prior", "elastix"])
    assert len(claims) == len(ORDERS) * len(METRIC_DIRECTIONS) == 6
    assert {(c.label, c.metric) for c in claims} == {
        (f"{a} > {b}", metric) for a, b in ORDERS for metric in ("overlap", "giou_loss")}
    for claim in claims:
        assert claim.study == STUDY and claim.label == " > ".join(claim.order)
        assert claim.higher_is_better == (claim.metric == "overlap")


@pytest.mark.parametrize("methods, labels", [
    (["masked_mse_giou", "masked_mse", "unregistered"],
     {"masked_mse_giou > unregistered", "masked_mse_giou > masked_mse"}),
    (["masked_mse", "mse"], {"masked_mse > mse"}),
    (["unregistered", "prior", "elastix"], set()),
    ([], set()),
])
def test_claims_of_missing_methods_are_dropped(methods, labels):
    claims = study_claims(methods)
    assert {c.label for c in claims} == labels and len(claims) == 2 * len(labels)


N_CASES, SEEDS = 24, (0, 1, 2)


def ranked_scores(ranks: dict[str, int], seed_overrides: dict | None = None) -> dict[str, pd.DataFrame]:
    """Per-pair files where rank 0 is best: overlap on the first 24, 16, 8, 0 cases; GIoU loss rising with rank.

    The unregistered method has no seed column (run once); the others have one row per (seed, case).
    ``seed_overrides`` {(method, seed): giou_loss} replaces one seed's GIoU loss of a method.
    """
    rng = np.random.default_rng(0)
    cases = [f"case{i:02d}" for i in range(N_CASES)]
    scores = {}
    for method, rank in ranks.items():
        overlap = (np.arange(N_CASES) < N_CASES * (3 - rank) / 3).astype(int)
        seeds = [None] if method == "unregistered" else SEEDS
        frames = []
        for seed in seeds:
            giou = 0.3 + 0.4 * rank + rng.uniform(0, 0.05, N_CASES)
            if seed_overrides and (method, seed) in seed_overrides:
                giou = np.full(N_CASES, seed_overrides[(method, seed)])
            frame = pd.DataFrame({"pair": cases, "overlap": overlap, "giou_loss": giou, "iou": 0.5,
                                  "centre_distance_px": 1.0, "masked_mse": 0.0})  # not claimed on
            frames.append(frame if seed is None else frame.assign(seed=seed))
        scores[method] = pd.concat(frames, ignore_index=True)
    return scores


def judged(scores: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return judge_claims(study_claims(list(scores)), long_scores(scores), source=STUDY)


def test_clearly_better_method_holds_in_every_seed():
    table = judged(ranked_scores({"masked_mse_giou": 0, "masked_mse": 1, "mse": 2, "unregistered": 3}))
    assert len(table) == 6
    assert (table["verdict"] == "holds").all(), table
    assert (table["holds_in_seeds"] == len(SEEDS)).all() and (table["n_seeds"] == len(SEEDS)).all()
    assert (table["p_value"] < 0.05).all()


def test_clearly_worse_method_is_contradicted():
    table = judged(ranked_scores({"masked_mse_giou": 3, "masked_mse": 2, "mse": 1, "unregistered": 0}))
    assert (table["verdict"] == "contradicted").all(), table
    assert (table["holds_in_seeds"] == 0).all() and (table["p_value"] > 0.5).all()


def test_a_seed_that_disagrees_makes_the_claim_inconclusive():
    scores = ranked_scores({"masked_mse_giou": 0, "unregistered": 3},
                           seed_overrides={("masked_mse_giou", 2): 5.0})  # seed 2 far worse than unregistered
    table = judged(scores).set_index("metric")
    assert table.loc["giou_loss", "verdict"] == "inconclusive"
    assert table.loc["giou_loss", "holds_in_seeds"] == 2
    assert table.loc["overlap", "verdict"] == "holds"  # overlap was left as it was
