"""Moving points through displacement fields, against closed-form fields and the dense warp."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from medrepro.spatial.points import invert_points, map_points, sample_field
from medrepro.spatial.warp import warp


@pytest.fixture
def rng():
    return np.random.default_rng(99)


def smooth_field(rng, shape, amplitude=2.0, sigma=3.0) -> np.ndarray:
    field = np.stack([ndimage.gaussian_filter(rng.normal(size=shape), sigma, mode="nearest") for _ in shape])
    return amplitude * field / np.abs(field).max()


def random_points(rng, shape, n=40, margin=3.0) -> np.ndarray:
    sizes = np.array(shape[::-1], dtype=float)  # x, y (, z)
    return margin + rng.random((n, len(shape))) * (sizes - 1 - 2 * margin)


@pytest.mark.parametrize("shape", [(12, 14, 16), (14, 16)])
def test_zero_field_keeps_points(rng, shape):
    points = random_points(rng, shape)
    field = np.zeros((len(shape), *shape))
    np.testing.assert_array_equal(map_points(field, points), points)
    inverse, residual = invert_points(field, points)
    np.testing.assert_array_equal(inverse, points)
    assert residual.max() == 0.0


@pytest.mark.parametrize("shape", [(12, 14, 16), (14, 16)])
def test_constant_field_shifts_both_ways(rng, shape):
    shift = np.array([1.25, -0.5, 2.0][: len(shape)])
    field = np.broadcast_to(shift.reshape(-1, *[1] * len(shape)), (len(shape), *shape))
    points = random_points(rng, shape)
    np.testing.assert_allclose(map_points(field, points), points + shift, atol=1e-12)
    inverse, residual = invert_points(field, points)
    np.testing.assert_allclose(inverse, points - shift, atol=1e-12)
    assert residual.max() < 1e-12


def test_sample_field_reads_x_y_z_from_the_right_axes():
    field = np.zeros((3, 4, 5, 6))
    z, y, x = np.mgrid[:4, :5, :6].astype(float)
    field[0], field[1], field[2] = x, 10 * y, 100 * z  # each channel equals its own coordinate, scaled
    points = np.array([[1.5, 2.25, 0.5], [5.0, 0.0, 3.0], [0.0, 4.0, 2.75]])
    np.testing.assert_allclose(sample_field(field, points), points * [1, 10, 100], atol=1e-12)
    # outside the grid the edge value repeats
    np.testing.assert_allclose(sample_field(field, np.array([[8.0, -2.0, 1.0]])), [[5.0, 0.0, 100.0]], atol=1e-12)


def test_sample_field_agrees_with_the_dense_warp_at_voxel_centres(rng):
    field = smooth_field(rng, (8, 9, 10))
    image = rng.random((8, 9, 10))
    moved = warp(torch.from_numpy(image)[None, None], torch.from_numpy(field)[None])[0, 0].numpy()
    voxel = np.array([[4, 3, 5], [6, 2, 2], [5, 5, 4]])  # (x, y, z) well inside
    target = map_points(field, voxel.astype(float))
    expected = ndimage.map_coordinates(image, target[:, ::-1].T, order=1)
    np.testing.assert_allclose(moved[voxel[:, 2], voxel[:, 1], voxel[:, 0]], expected, atol=1e-6)


@pytest.mark.parametrize("shape", [(16, 18, 20), (24, 28)])
def test_inverting_mapped_points_returns_them(rng, shape):
    field = smooth_field(rng, shape)
    points = random_points(rng, shape)
    recovered, residual = invert_points(field, map_points(field, points))
    assert residual.max() < 1e-4
    np.testing.assert_allclose(recovered, points, atol=1e-3)


def test_non_convergence_shows_in_the_residual(rng):
    field = 4.0 * smooth_field(rng, (12, 14, 16), sigma=1.0)  # steep: not a contraction
    points = random_points(rng, (12, 14, 16))
    _, residual = invert_points(field, points, iterations=3)
    assert residual.shape == (len(points),)
    assert residual.max() > 1e-4


def test_rejects_mismatched_points():
    with pytest.raises(ValueError):
        map_points(np.zeros((3, 4, 5, 6)), np.zeros((2, 2)))
    with pytest.raises(ValueError):
        sample_field(np.zeros((2, 4, 5, 6)), np.zeros((2, 3)))
