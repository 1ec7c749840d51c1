"""The study's figures: geometry helpers against hand computations, the example-picking rule, and
every figure written as the same PNG bytes twice."""

import numpy as np
import pandas as pd
import pytest
import torch

from medrepro.spatial import warp
from medrepro.errors import DataError
from medrepro.studies.mammo_registration import figures, networks
from medrepro.studies.mammo_registration.evaluation import register_pairs, score_pairs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HEIGHT, WIDTH = 64, 40


def _blob(centre_x: float, centre_y: float, radius_x: float, radius_y: float) -> np.ndarray:
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH] + 0.5
    inside = ((cols - centre_x) / radius_x) ** 2 + ((rows - centre_y) / radius_y) ** 2 <= 1.0
    return np.where(inside, 0.3 + 0.5 * rows / HEIGHT, 0.0).astype(np.float32)


@pytest.fixture(scope="module")
def pairs():
    cc = np.stack([_blob(30, 32, 14, 26), _blob(28, 30, 12, 24), _blob(32, 34, 10, 20)])
    mlo = np.stack([_blob(26, 36, 16, 24), _blob(30, 28, 12, 30), _blob(24, 30, 14, 22)])
    return {
        "cc": cc, "mlo": mlo, "cc_region": cc > 0, "mlo_region": mlo > 0,
        "cc_box": np.array([[20, 20, 28, 30], [22, 10, 30, 18], [26, 40, 34, 48]], np.float32),
        "mlo_box": np.array([[18, 24, 26, 34], [24, 14, 32, 22], [10, 30, 18, 38]], np.float32),
        "pair": np.array(["P_003_LEFT", "P_001_RIGHT", "P_002_LEFT"]), "split": np.array(["test"] * 3),
    }


def _prior_matrix() -> np.ndarray:
    params = networks.prior_parameters().reshape(1, 2, 3).double()
    return networks.centred_to_pixel(params, (HEIGHT, WIDTH), (HEIGHT, WIDTH))[0].numpy()


@pytest.fixture(scope="module")
def matrices():
    identity = np.tile(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), (3, 1, 1))
    centre = warp.image_centre((HEIGHT, WIDTH))
    turned = np.stack([warp.rotation_matrix(angle, centre, dtype=torch.float64).numpy() for angle in (5, -8, 12)])
    shifted = identity.copy()
    shifted[:, :, 2] = [[2.0, -3.0], [-1.0, 1.0], [4.0, 0.0]]
    return {"unregistered": identity, "prior": np.tile(_prior_matrix(), (3, 1, 1)),
            "masked_mse": shifted, "masked_mse_giou": turned}


def _scores_for(pairs, method_matrices, seed=None) -> pd.DataFrame:
    carried = register_pairs(pairs, method_matrices)["cc_box"]
    frame = score_pairs(pairs["pair"], pairs["mlo_box"], carried, [0.01, 0.02, 0.03])
    return frame if seed is None else frame.assign(seed=seed)


@pytest.fixture(scope="module")
def scores(pairs, matrices):
    learned = pd.concat([_scores_for(pairs, matrices["masked_mse_giou"], seed) for seed in (1, 0)])
    return {"unregistered": _scores_for(pairs, matrices["unregistered"]),
            "masked_mse": pd.concat([_scores_for(pairs, matrices["masked_mse"], s) for s in (0, 1)]),
            "masked_mse_giou": learned}


def _log(offset: float, with_giou: bool = True) -> pd.DataFrame:
    rows = []
    for step in range(1, 13):
        epoch = (step - 1) // 4 + 1
        rows.append({"step": step, "epoch": epoch, "split": "train", "mse": offset + 1.0 / step,
                     "giou_loss": 1.5 - 0.05 * step if with_giou else np.nan})
        if step % 4 == 0:
            rows.append({"step": step, "epoch": epoch, "split": "val", "mse": offset + 2.0 / step,
                         "giou_loss": 1.6 - 0.05 * step if with_giou else np.nan})
    frame = pd.DataFrame(rows)
    return frame.assign(total=frame["mse"] + frame["giou_loss"].fillna(0.0))


# ----------------------------------------------------------------------------- geometry (the evaluation's, drawn)


def _box_only_pair(cc_box) -> dict:
    """One pair of empty views whose CC box is ``cc_box``: enough to carry the box."""
    blank = np.zeros((1, HEIGHT, WIDTH), np.float32)
    return {"cc": blank, "mlo": blank, "cc_region": blank > 0, "mlo_region": blank > 0,
            "cc_box": np.asarray(cc_box, np.float64)[None]}


def _rectified(matrix, cc_box) -> np.ndarray:
    return figures.registered_pair(_box_only_pair(cc_box), 0, matrix)["cc_box"]


def test_overlap_mask_matches_a_shift_computed_by_hand(pairs):
    cc_region, mlo_region = pairs["cc_region"][0], pairs["mlo_region"][0]
    dx, dy = 3, -5  # output pixel (r, c) samples CC pixel (r + dy, c + dx) exactly at its centre
    matrix = warp.translation_matrix(dx, dy, dtype=torch.float64).numpy()
    expected = np.zeros_like(mlo_region)
    for r in range(HEIGHT):
        for c in range(WIDTH):
            if 0 <= r + dy < HEIGHT and 0 <= c + dx < WIDTH:
                expected[r, c] = mlo_region[r, c] and cc_region[r + dy, c + dx]
    got = figures.registered_pair(pairs, 0, matrix)["mask"]
    assert got.dtype == bool and got.shape == (HEIGHT, WIDTH)
    np.testing.assert_array_equal(got, expected)
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    np.testing.assert_array_equal(figures.registered_pair(pairs, 0, identity)["mask"], cc_region & mlo_region)


def test_overlap_mask_is_the_kernel_mask_for_a_rotation(pairs):
    matrix = warp.rotation_matrix(20, warp.image_centre((HEIGHT, WIDTH)), dtype=torch.float64)
    expected = warp.overlap_mask((HEIGHT, WIDTH), matrix, (HEIGHT, WIDTH),
                                 fixed_region=torch.as_tensor(pairs["mlo_region"][1]),
                                 moving_region=torch.as_tensor(pairs["cc_region"][1]))[0, 0].numpy()
    got = figures.registered_pair(pairs, 1, matrix.numpy())["mask"]
    np.testing.assert_array_equal(got, expected)
    assert 0 < got.sum() < (pairs["cc_region"][1] & pairs["mlo_region"][1]).sum() + 1


def test_registered_cc_identity_and_integer_shift(pairs):
    cc = pairs["cc"][0]
    np.testing.assert_allclose(figures.registered_pair(pairs, 0, np.eye(2, 3))["cc"], cc, atol=1e-6)
    shifted = figures.registered_pair(pairs, 0, warp.translation_matrix(2, 1).numpy())["cc"]
    np.testing.assert_allclose(shifted[:-1, :-2], cc[1:, 2:], atol=1e-6)
    assert np.all(shifted[-1] == 0) and np.all(shifted[:, -2:] == 0)


def test_carried_corners_and_rectified_box_by_hand():
    matrix = np.array([[2.0, 0.0, 3.0], [0.0, 0.5, -1.0]])  # samples x_in = 2 x + 3, y_in = 0.5 y - 1
    box = np.array([5.0, 2.0, 9.0, 4.0])
    corners = figures.carried_cc_corners(matrix, box)
    # Inverse: x = (x_in - 3) / 2, y = (y_in + 1) / 0.5; corners in (x1,y1), (x2,y1), (x2,y2), (x1,y2) order.
    np.testing.assert_allclose(corners, [[1.0, 6.0], [3.0, 6.0], [3.0, 10.0], [1.0, 10.0]])
    np.testing.assert_allclose(_rectified(matrix, box), [1.0, 6.0, 3.0, 10.0])


def test_rectified_box_encloses_the_rotated_corners():
    angle = np.radians(30.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = np.concatenate([rotation, [[4.0], [-2.0]]], axis=1)
    box = np.array([10.0, 12.0, 18.0, 16.0])
    points = np.array([[10, 12], [18, 12], [18, 16], [10, 16]], float)
    expected = (points - [4.0, -2.0]) @ np.linalg.inv(rotation).T
    corners = figures.carried_cc_corners(matrix, box)
    np.testing.assert_allclose(corners, expected, atol=1e-12)
    np.testing.assert_allclose(_rectified(matrix, box),
                               [*expected.min(axis=0), *expected.max(axis=0)], atol=1e-12)


# ----------------------------------------------------------------------------- the rules


def test_example_indices_ranks_with_ties_broken_by_name():
    frame = pd.DataFrame({
        "pair": ["g", "b", "a", "f", "c", "e", "d"],
        "giou_loss": [0.5, 0.1, 0.1, 1.9, 1.5, 1.9, 0.7],
    }, index=[10, 3, 7, 1, 0, 2, 5])  # a shuffled index: the answer is positions, not labels
    # Ranked: a(2) 0.1, b(1) 0.1, g(0) 0.5, d(6) 0.7, c(4) 1.5, e(5) 1.9, f(3) 1.9
    picks = figures.example_indices(frame, per_kind=2)
    assert picks == {"success": [2, 1], "median": [0, 6], "failure": [5, 3]}
    assert figures.example_indices(frame, per_kind=1) == {"success": [2], "median": [6], "failure": [3]}


@pytest.mark.parametrize("n, per_kind, expected", [
    (5, 2, {"success": [0, 1], "median": [2], "failure": [3, 4]}),
    (4, 2, {"success": [0, 1], "median": [], "failure": [2, 3]}),
    (3, 2, {"success": [0, 1], "median": [], "failure": [2]}),
    (1, 3, {"success": [0], "median": [], "failure": []}),
    (9, 2, {"success": [0, 1], "median": [3, 4], "failure": [7, 8]}),
    (8, 2, {"success": [0, 1], "median": [3, 4], "failure": [6, 7]}),
])
def test_example_indices_with_few_pairs_never_repeats_a_pair(n, per_kind, expected):
    frame = pd.DataFrame({"pair": [f"p{i}" for i in range(n)], "giou_loss": np.arange(n) / n})
    picks = figures.example_indices(frame, per_kind)
    assert picks == expected
    shown = sum(picks.values(), [])
    assert len(shown) == len(set(shown)) == min(n, 3 * per_kind)


def test_example_indices_rejects_bad_input():
    frame = pd.DataFrame({"pair": ["a", "a"], "giou_loss": [0.1, 0.2]})
    with pytest.raises(DataError, match="single seed"):
        figures.example_indices(frame, 1)
    with pytest.raises(ValueError, match="per_kind"):
        figures.example_indices(frame.iloc[:1], 0)
    with pytest.raises(DataError, match="giou_loss"):
        figures.example_indices(frame[["pair"]], 1)


def test_config_seed_scores_takes_the_lowest_or_the_given_seed(scores):
    frame, seed = figures.config_seed_scores(scores["masked_mse_giou"])
    assert seed == 0 and len(frame) == 3 and set(frame["seed"]) == {0}
    frame, seed = figures.config_seed_scores(scores["masked_mse_giou"], seed=1)
    assert seed == 1 and set(frame["seed"]) == {1}
    frame, seed = figures.config_seed_scores(scores["unregistered"])
    assert seed is None and len(frame) == 3
    with pytest.raises(DataError, match="seed 7"):
        figures.config_seed_scores(scores["masked_mse_giou"], seed=7)


def test_default_pair_index_is_the_first_name(pairs):
    assert figures.default_pair_index(pairs["pair"]) == 1
    assert figures.default_pair_index(["b", "a", "a"]) == 1


# ----------------------------------------------------------------------------- the figures


def _written_twice(tmp_path, draw) -> bytes:
    first = draw(tmp_path / "first.png")
    second = draw(tmp_path / "second.png")
    data = first.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5000
    assert data == second.read_bytes()
    assert not list(tmp_path.glob(".*"))
    return data


def test_plot_overlap_mask(tmp_path, pairs, matrices):
    data = _written_twice(tmp_path, lambda out: figures.plot_overlap_mask(pairs, matrices, out))
    other = figures.plot_overlap_mask(pairs, matrices, tmp_path / "other.png", index=2).read_bytes()
    assert other != data
    without_unregistered = {k: v for k, v in matrices.items() if k != "unregistered"}
    assert figures.plot_overlap_mask(pairs, without_unregistered, tmp_path / "prior.png").read_bytes() != data


def test_plot_overlap_mask_errors(tmp_path, pairs, matrices):
    with pytest.raises(DataError, match="outside"):
        figures.plot_overlap_mask(pairs, matrices, tmp_path / "x.png", index=3)
    with pytest.raises(DataError, match="masked_mse_giou"):
        figures.plot_overlap_mask(pairs, {"prior": matrices["prior"]}, tmp_path / "x.png")
    with pytest.raises(DataError, match=r"\(3, 2, 3\)"):
        figures.plot_overlap_mask(pairs, {**matrices, "masked_mse_giou": matrices["prior"][:2]}, tmp_path / "x.png")
    with pytest.raises(DataError, match="cc_region"):
        figures.plot_overlap_mask({k: v for k, v in pairs.items() if k != "cc_region"}, matrices, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_plot_training_curves(tmp_path):
    logs = {("masked_mse_giou", 0): _log(0.1), ("masked_mse_giou", 1): _log(0.12),
            ("masked_mse", 0): _log(0.2, with_giou=False), ("mse", 0): _log(0.3)}
    _written_twice(tmp_path, lambda out: figures.plot_training_curves(logs, out))
    with pytest.raises(DataError, match="loss log"):
        figures.plot_training_curves({}, tmp_path / "none.png")


def test_plot_giou_histogram(tmp_path, scores):
    _written_twice(tmp_path, lambda out: figures.plot_giou_histogram(scores, out))
    with pytest.raises(DataError, match="giou_loss"):
        figures.plot_giou_histogram({"mse": pd.DataFrame({"pair": ["a"]})}, tmp_path / "bad.png")


def test_plot_examples(tmp_path, pairs, matrices, scores):
    _written_twice(tmp_path, lambda out: figures.plot_examples(pairs, matrices, scores, out, per_kind=1))


def test_plot_examples_shows_the_pairs_the_rule_picks(tmp_path, pairs, matrices, scores, monkeypatch):
    shown = []
    monkeypatch.setattr(figures, "_example_panel",
                        lambda ax, pairs_, index, matrix, title: shown.append((index, title, matrix.tolist())))
    frame = scores["masked_mse_giou"].copy()
    frame.loc[frame["seed"] == 1, "giou_loss"] = [1.9, 0.1, 0.5]  # seed 1 ranks the pairs differently
    figures.plot_examples(pairs, matrices, {"masked_mse_giou": frame}, tmp_path / "ex.png", per_kind=1)
    seed0 = frame[frame["seed"] == 0].reset_index(drop=True)
    order = seed0.sort_values(["giou_loss", "pair"])["pair"].tolist()
    names = list(pairs["pair"])
    assert [index for index, _, _ in shown] == [names.index(p) for p in order]
    for index, title, matrix in shown:
        loss = float(seed0.loc[seed0["pair"] == names[index], "giou_loss"].iloc[0])
        assert title == f"{figures.wrap_name(names[index])}\nGIoU loss {loss:.3f}"
        assert matrix == matrices["masked_mse_giou"][index].tolist()


def test_plot_examples_with_a_single_scored_pair(tmp_path, pairs, matrices, scores):
    one = {"masked_mse_giou": scores["unregistered"].iloc[[2]]}  # no seed column: all rows are the run
    out = figures.plot_examples(pairs, matrices, one, tmp_path / "one.png", per_kind=3)
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_wrap_name_breaks_after_underscores():
    assert figures.wrap_name("Training_P_00017_LEFT_calcification_1", 20) == "Training_P_00017_\nLEFT_calcification_1"
    assert figures.wrap_name("short_name", 20) == "short_name"
    assert figures.wrap_name("nounderscoresatallinthisname", 5) == "nounderscoresatallinthisname"
    assert figures.wrap_name("a_b_c", 1).replace("\n", "") == "a_b_c"


def test_plot_examples_rejects_pairs_it_cannot_find(tmp_path, pairs, matrices, scores):
    renamed = scores["masked_mse_giou"].assign(pair=lambda f: f["pair"] + "_other")
    with pytest.raises(DataError, match="not among the test pairs"):
        figures.plot_examples(pairs, matrices, {"masked_mse_giou": renamed}, tmp_path / "x.png")
    with pytest.raises(DataError, match="no per-pair scores"):
        figures.plot_examples(pairs, matrices, {}, tmp_path / "x.png")


def test_plot_synthetic_pairs(tmp_path, pairs):
    _written_twice(tmp_path, lambda out: figures.plot_synthetic_pairs(pairs, out, n=2))
    assert figures.plot_synthetic_pairs(pairs, tmp_path / "all.png", n=10).read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="n must"):
        figures.plot_synthetic_pairs(pairs, tmp_path / "none.png", n=0)
