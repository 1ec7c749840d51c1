"""Landmark errors against hand-made numbers and scikit-learn's regression errors."""

import numpy as np
import pytest
from sklearn.metrics import mean_absolute_error, median_absolute_error

from medrepro.metrics.landmarks import landmark_distances, mean_error, median_error, robustness


@pytest.fixture
def pairs():
    rng = np.random.default_rng(5)
    fixed = rng.random((25, 3)) * [100, 90, 40]
    moving = fixed + rng.normal(0, 2.0, fixed.shape)
    return fixed, moving, np.array([0.7, 0.8, 2.5])


def test_distances_by_hand():
    a = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    b = np.array([[3.0, 4.0, 0.0], [1.0, 2.0, 5.0]])
    np.testing.assert_allclose(landmark_distances(a, b, [1, 1, 1]), [5.0, 2.0])
    np.testing.assert_allclose(landmark_distances(a, b, [2.0, 0.5, 1.5]), [np.hypot(6.0, 2.0), 3.0])
    np.testing.assert_allclose(landmark_distances(a[:, :2], b[:, :2], 0.5), [2.5, 0.0])


def test_median_and_mean_by_hand():
    a = np.zeros((3, 3))
    b = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 1.0], [0.0, 6.0, 8.0]])  # distances 5, 1, 10
    assert median_error(a, b) == 5.0
    assert mean_error(a, b) == pytest.approx(16 / 3)
    # per axis: |x| = 3, 0, 0; |y| = 4, 0, 6; |z| = 0, 1, 8
    assert median_error(a, b, kind="per_axis") == pytest.approx((0 + 4 + 1) / 3)
    assert mean_error(a, b, kind="per_axis") == pytest.approx((1 + 10 / 3 + 3) / 3)


def test_per_axis_errors_equal_scikit_learn(pairs):
    fixed, moving, spacing = pairs
    fixed_mm, moving_mm = fixed * spacing, moving * spacing
    assert median_error(fixed, moving, spacing, kind="per_axis") == pytest.approx(
        median_absolute_error(fixed_mm, moving_mm), rel=1e-12)
    assert mean_error(fixed, moving, spacing, kind="per_axis") == pytest.approx(
        mean_absolute_error(fixed_mm, moving_mm), rel=1e-12)


def test_euclidean_errors_summarise_the_distances(pairs):
    fixed, moving, spacing = pairs
    distances = landmark_distances(fixed, moving, spacing)
    assert median_error(fixed, moving, spacing) == pytest.approx(np.median(distances))
    assert mean_error(fixed, moving, spacing) == pytest.approx(np.mean(distances))
    assert median_error(fixed, moving, spacing, kind="per_axis") < median_error(fixed, moving, spacing)


def test_exact_mapping_and_identity(pairs):
    fixed, moving, spacing = pairs
    before = landmark_distances(fixed, moving, spacing)
    after_exact = landmark_distances(fixed, fixed.copy(), spacing)
    assert median_error(fixed, fixed.copy(), spacing) == 0.0
    assert mean_error(fixed, fixed.copy(), spacing, kind="per_axis") == 0.0
    assert robustness(before, after_exact) == 1.0
    assert robustness(before, before.copy()) == 0.0  # unchanged is not improved


def test_robustness_by_hand_and_bad_input():
    assert robustness([3.0, 2.0, 1.0, 4.0], [1.0, 2.0, 1.5, 0.5]) == 0.5
    with pytest.raises(ValueError):
        robustness([], [])
    with pytest.raises(ValueError):
        robustness([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        median_error(np.zeros((2, 3)), np.zeros((2, 3)), kind="manhattan")
    with pytest.raises(ValueError):
        landmark_distances(np.zeros((2, 3)), np.zeros((3, 3)))
