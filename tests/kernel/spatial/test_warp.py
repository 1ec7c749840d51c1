"""Warper against exact shifts and scipy's bilinear interpolation."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter, map_coordinates

from medrepro.spatial.warp import identity_grid, to_onehot, warp, warp_labels, warp_onehot


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


# ----------------------------------------------------------------------------- 3-D


def test_3d_identity_grid_channels_are_x_y_z():
    grid = identity_grid(2, 3, 4)
    assert grid.shape == (1, 3, 2, 3, 4)
    z, y, x = np.meshgrid(np.arange(2), np.arange(3), np.arange(4), indexing="ij")
    np.testing.assert_array_equal(grid[0, 0].numpy(), x)
    np.testing.assert_array_equal(grid[0, 1].numpy(), y)
    np.testing.assert_array_equal(grid[0, 2].numpy(), z)


def test_3d_zero_displacement_is_the_identity():
    volume = torch.rand(2, 2, 5, 6, 7, dtype=torch.float64)
    warped = warp(volume, torch.zeros(2, 3, 5, 6, 7, dtype=torch.float64))
    torch.testing.assert_close(warped, volume, rtol=0, atol=1e-12)


@pytest.mark.parametrize("axis, channel", [(4, 0), (3, 1), (2, 2)])
def test_3d_integer_shift_along_each_axis(axis, channel):
    volume = torch.rand(1, 1, 6, 7, 8, dtype=torch.float64)
    displacement = torch.zeros(1, 3, 6, 7, 8, dtype=torch.float64)
    displacement[:, channel] = 1.0  # sample one voxel further along x, y or z
    warped = warp(volume, displacement)
    inner = [slice(None)] * 5
    inner[axis] = slice(0, -1)
    shifted = [slice(None)] * 5
    shifted[axis] = slice(1, None)
    torch.testing.assert_close(warped[tuple(inner)], volume[tuple(shifted)], rtol=0, atol=1e-12)
    last = [slice(None)] * 5
    last[axis] = -1
    assert torch.all(warped[tuple(last)] == 0)  # sampled outside: zero padding


def test_3d_warp_matches_scipy_trilinear_interpolation():
    from scipy import ndimage as ndi

    rng = np.random.default_rng(3)
    volume = rng.random((5, 6, 7))
    displacement = rng.normal(0, 1.5, (3, 5, 6, 7))
    z, y, x = np.meshgrid(np.arange(5), np.arange(6), np.arange(7), indexing="ij")
    coords = np.stack([z + displacement[2], y + displacement[1], x + displacement[0]])
    expected = ndi.map_coordinates(volume, coords, order=1, mode="constant", cval=0.0)
    got = warp(torch.from_numpy(volume)[None, None], torch.from_numpy(displacement)[None])[0, 0].numpy()
    inside = np.all((coords >= 0) & (coords <= np.array([4, 5, 6])[:, None, None, None]), axis=0)
    np.testing.assert_allclose(got[inside], expected[inside], atol=1e-10)


def test_3d_onehot_warp_stays_a_distribution_and_labels_keep_their_set():
    labels = torch.randint(0, 3, (2, 4, 5, 6))
    onehot = to_onehot(labels, 3)
    assert onehot.shape == (2, 3, 4, 5, 6)
    torch.testing.assert_close(onehot.argmax(dim=1), labels)
    displacement = torch.randn(2, 3, 4, 5, 6) * 2
    warped = warp_onehot(onehot, displacement)
    torch.testing.assert_close(warped.sum(dim=1), torch.ones(2, 4, 5, 6))
    assert set(warp_labels(labels, displacement, 3).unique().tolist()) <= {0, 1, 2}
    torch.testing.assert_close(warp_labels(labels, torch.zeros(2, 3, 4, 5, 6), 3), labels)


def test_3d_shape_errors_name_the_layout():
    with pytest.raises(ValueError, match=r"\(B, 3, D, H, W\)"):
        warp(torch.zeros(1, 1, 4, 5, 6), torch.zeros(1, 2, 4, 5, 6))
    with pytest.raises(ValueError, match="labels"):
        to_onehot(torch.zeros(1, 2, 3, 4, 5, dtype=torch.long), 2)
