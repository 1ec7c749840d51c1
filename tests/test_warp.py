"""Warper against exact shifts and scipy's bilinear interpolation."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter, map_coordinates

from medrepro.nn.warp import identity_grid, to_onehot, warp, warp_labels, warp_onehot


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def smooth_field(rng, shape, amplitude):
    """(B, 2, H, W) smooth random displacement with values up to about +-amplitude."""
    field = gaussian_filter(rng.normal(size=shape), sigma=(0, 0, 3, 3))
    return amplitude * field / np.abs(field).max()


def test_identity_grid_channels_are_x_then_y():
    grid = identity_grid(3, 4)
    assert grid.shape == (1, 2, 3, 4)
    np.testing.assert_array_equal(grid[0, 0].numpy(), np.tile(np.arange(4), (3, 1)))
    np.testing.assert_array_equal(grid[0, 1].numpy(), np.tile(np.arange(3)[:, None], (1, 4)))


def test_zero_field_is_identity(rng):
    image = torch.from_numpy(rng.random((2, 3, 17, 23))).float()
    warped = warp(image, torch.zeros(2, 2, 17, 23))
    np.testing.assert_allclose(warped.numpy(), image.numpy(), atol=1e-5)
    labels = torch.from_numpy(rng.integers(0, 4, (2, 17, 23)))
    assert torch.equal(warp_labels(labels, torch.zeros(2, 2, 17, 23), 4), labels)


def test_constant_integer_field_is_a_shift(rng):
    image = rng.random((20, 24)).astype(np.float32)
    dx, dy = 3, -2  # output (y, x) reads input (y - 2, x + 3)
    displacement = torch.zeros(1, 2, 20, 24)
    displacement[:, 0], displacement[:, 1] = dx, dy
    warped = warp(torch.from_numpy(image)[None, None], displacement)[0, 0].numpy()
    expected = np.roll(image, shift=(-dy, -dx), axis=(0, 1))
    np.testing.assert_allclose(warped[2:, :-3], expected[2:, :-3], atol=1e-5)
    np.testing.assert_allclose(warped[2:, :-3], image[:-2, 3:], atol=1e-5)
    # Positions outside the moving image read zero.
    np.testing.assert_allclose(warped[:2, :], 0.0, atol=1e-6)
    np.testing.assert_allclose(warped[:, -3:], 0.0, atol=1e-6)


def test_half_pixel_shift_averages_neighbours(rng):
    image = rng.random((8, 8)).astype(np.float32)
    displacement = torch.zeros(1, 2, 8, 8)
    displacement[:, 0] = 0.5
    warped = warp(torch.from_numpy(image)[None, None], displacement)[0, 0].numpy()
    np.testing.assert_allclose(warped[:, :-1], 0.5 * (image[:, :-1] + image[:, 1:]), atol=1e-6)


def test_bilinear_warp_matches_scipy(rng):
    image = rng.random((2, 1, 24, 20))
    field = smooth_field(rng, (2, 2, 24, 20), amplitude=4.0)
    warped = warp(torch.from_numpy(image), torch.from_numpy(field)).numpy()
    ys, xs = np.mgrid[:24, :20].astype(float)
    for b in range(2):
        coords = [ys + field[b, 1], xs + field[b, 0]]
        expected = map_coordinates(image[b, 0], coords, order=1, mode="grid-constant", cval=0.0)
        np.testing.assert_allclose(warped[b, 0], expected, atol=1e-10)


def test_onehot_warp_uses_border_padding_like_scipy_nearest(rng):
    onehot = to_onehot(torch.from_numpy(rng.integers(0, 3, (1, 16, 16))), 3).double()
    field = smooth_field(rng, (1, 2, 16, 16), amplitude=6.0)
    warped = warp_onehot(onehot, torch.from_numpy(field)).numpy()
    ys, xs = np.mgrid[:16, :16].astype(float)
    for c in range(3):
        expected = map_coordinates(onehot[0, c].numpy(), [ys + field[0, 1], xs + field[0, 0]], order=1, mode="nearest")
        np.testing.assert_allclose(warped[0, c], expected, atol=1e-10)


def test_onehot_stays_a_distribution_after_warping(rng):
    labels = torch.from_numpy(rng.integers(0, 4, (3, 32, 32)))
    field = torch.from_numpy(smooth_field(rng, (3, 2, 32, 32), amplitude=8.0)).float()
    warped = warp_onehot(to_onehot(labels, 4), field)
    np.testing.assert_allclose(warped.sum(dim=1).numpy(), 1.0, atol=1e-5)
    assert warped.min() >= -1e-6 and warped.max() <= 1 + 1e-6
    warped_labels = warp_labels(labels, field, 4)
    assert warped_labels.shape == labels.shape and warped_labels.dtype == torch.long
    assert warped_labels.min() >= 0 and warped_labels.max() < 4


def test_warp_labels_integer_shift_moves_labels():
    labels = torch.zeros(1, 16, 16, dtype=torch.long)
    labels[0, 4:10, 5:9] = 2
    displacement = torch.zeros(1, 2, 16, 16)
    displacement[:, 0] = -2  # output x reads input x - 2: the block moves right by 2
    expected = torch.zeros_like(labels)
    expected[0, 4:10, 7:11] = 2
    assert torch.equal(warp_labels(labels, displacement, 3), expected)


def test_to_onehot_and_shape_checks():
    onehot = to_onehot(torch.tensor([[[0, 2], [1, 1]]]), 3)
    assert onehot.shape == (1, 3, 2, 2)
    np.testing.assert_array_equal(onehot.argmax(dim=1).numpy(), [[[0, 2], [1, 1]]])
    with pytest.raises(ValueError, match="outside"):
        to_onehot(torch.tensor([[[0, 3]]]), 3)
    with pytest.raises(ValueError):
        to_onehot(torch.zeros(4, 4, dtype=torch.long), 2)
    with pytest.raises(ValueError):
        warp(torch.zeros(1, 1, 8, 8), torch.zeros(1, 2, 8, 9))
    with pytest.raises(ValueError):
        warp(torch.zeros(1, 1, 8, 8), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError):
        warp(torch.zeros(2, 1, 8, 8), torch.zeros(1, 2, 8, 8))
