"""Train/validation/test folds and the test pairs of the chest registration study.

The paper divides each dataset at random into 60/20/20 % folds and tests on
2 x N random pairs of the test fold (N = test fold size). The authors' public
split lists (train and test only) can be used instead for the real datasets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medrepro.errors import ConfigError, DataError


def random_folds(names: list[str], fractions: tuple[float, float, float], seed: int) -> dict[str, list[str]]:
    """Shuffle ``names`` with ``seed`` and cut them into train/val/test by ``fractions``."""
    if len(names) < 3:
        raise ConfigError(f"need at least 3 subjects to split, got {len(names)}")
    total = sum(fractions)
    if not np.isclose(total, 1.0):
        raise ConfigError(f"split fractions must sum to 1, got {fractions} (sum {total})")
    order = np.random.default_rng(seed).permutation(sorted(names)).tolist()
    n = len(order)
    n_test = max(2, int(round(fractions[2] * n)))
    n_val = max(1, int(round(fractions[1] * n))) if fractions[1] > 0 else 0
    n_train = n - n_val - n_test
    if n_train < 2:
        raise ConfigError(f"split leaves {n_train} training subjects out of {n}")
    return {"train": sorted(order[:n_train]), "val": sorted(order[n_train:n_train + n_val]),
            "test": sorted(order[n_train + n_val:])}


def folds_from_lists(names: list[str], train_list: Path, test_list: Path, val_fraction: float,
                     seed: int) -> dict[str, list[str]]:
    """The authors' train/test lists; validation is carved from their training list."""
    available = set(names)

    def read(path: Path) -> list[str]:
        if not path.exists():
            raise DataError(path, "split list not found")
        stems = [Path(line.strip()).stem for line in path.read_text().splitlines() if line.strip()]
        missing = [s for s in stems if s not in available]
        if missing:
            raise DataError(path, f"{len(missing)} listed images are not in the converted dataset, "
                                  f"e.g. {missing[:3]}")
        return stems

    train, test = read(train_list), read(test_list)
    overlap = set(train) & set(test)
    if overlap:
        raise DataError(test_list, f"{len(overlap)} images are in both train and test lists")
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(sorted(train)).tolist()
    n_val = int(round(val_fraction * len(shuffled)))
    return {"train": sorted(shuffled[n_val:]), "val": sorted(shuffled[:n_val]), "test": sorted(test)}


def test_pairs(test_names: list[str], factor: int, seed: int) -> list[list[str]]:
    """``factor`` x N random ordered (moving, fixed) pairs of distinct test subjects, no repeats
    while distinct pairs remain."""
    n = len(test_names)
    if n < 2:
        raise ConfigError(f"need at least 2 test subjects for pairs, got {n}")
    wanted = factor * n
    all_pairs = [(a, b) for a in sorted(test_names) for b in sorted(test_names) if a != b]
    rng = np.random.default_rng(seed)
    picks = rng.permutation(len(all_pairs))
    if wanted > len(all_pairs):  # tiny folds: allow repeats only after every pair was used
        picks = np.concatenate([picks, rng.integers(0, len(all_pairs), wanted - len(all_pairs))])
    return [list(all_pairs[i]) for i in picks[:wanted]]
