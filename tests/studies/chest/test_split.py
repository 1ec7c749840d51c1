"""Folds and test pairs."""

import pytest

from medrepro.errors import ConfigError, DataError
from medrepro.studies.chest.split import folds_from_lists, random_folds, test_pairs as make_pairs

NAMES = [f"S{i:03d}" for i in range(30)]


def test_random_folds_partition_and_fractions():
    folds = random_folds(NAMES, (0.6, 0.2, 0.2), seed=0)
    assert sorted(folds["train"] + folds["val"] + folds["test"]) == sorted(NAMES)
    assert (len(folds["train"]), len(folds["val"]), len(folds["test"])) == (18, 6, 6)
    assert random_folds(NAMES, (0.6, 0.2, 0.2), seed=0) == folds
    assert random_folds(NAMES, (0.6, 0.2, 0.2), seed=1) != folds


def test_random_folds_rejects_bad_fractions():
    with pytest.raises(ConfigError, match="sum to 1"):
        random_folds(NAMES, (0.5, 0.2, 0.2), seed=0)


def test_test_pairs_are_distinct_ordered_pairs():
    test = NAMES[:6]
    pairs = make_pairs(test, factor=2, seed=0)
    assert len(pairs) == 12
    assert all(m != f and m in test and f in test for m, f in pairs)
    assert len({tuple(p) for p in pairs}) == 12
    assert make_pairs(test, 2, 0) == pairs


def test_tiny_test_fold_reuses_pairs_only_when_exhausted():
    pairs = make_pairs(["a", "b"], factor=2, seed=0)
    assert len(pairs) == 4 and {tuple(p) for p in pairs} == {("a", "b"), ("b", "a")}


def test_folds_from_author_lists(tmp_path):
    (tmp_path / "X_train.txt").write_text("\n".join(f"/data/{n}.png" for n in NAMES[:20]) + "\n")
    (tmp_path / "X_test.txt").write_text("\n".join(f"{n}.png" for n in NAMES[20:]) + "\n")
    folds = folds_from_lists(NAMES, tmp_path / "X_train.txt", tmp_path / "X_test.txt", 0.25, seed=0)
    assert folds["test"] == NAMES[20:]
    assert len(folds["val"]) == 5 and len(folds["train"]) == 15


def test_author_list_with_unknown_images_names_the_file(tmp_path):
    (tmp_path / "X_train.txt").write_text("nope.png\n")
    (tmp_path / "X_test.txt").write_text("S001.png\n")
    with pytest.raises(DataError, match="X_train.txt.*not in the converted dataset"):
        folds_from_lists(NAMES, tmp_path / "X_train.txt", tmp_path / "X_test.txt", 0.25, seed=0)
