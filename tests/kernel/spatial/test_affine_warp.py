"""Affine warping in pixel coordinates, its agreement with the box transform, the overlap mask, masked MSE."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medrepro.spatial.boxes import box_from_mask, transform_boxes
from medrepro.nn.losses import masked_mse, mse
from medrepro.spatial.warp import (
    affine_warp,
    compose_affine,
    image_centre,
    invert_affine,
    overlap_mask,
    pixel_centres,
    pixel_to_theta,
    rotation_matrix,
    theta_to_pixel,
    translation_matrix,
    warped_support,
)

F64 = torch.float64


@pytest.fixture
def rng():
    return np.random.default_rng(5)


def random_affine(rng, batch=()):
    linear = np.eye(2) + 0.3 * rng.normal(size=(*batch, 2, 2))
    shift = rng.uniform(-10, 10, size=(*batch, 2, 1))
    return torch.from_numpy(np.concatenate([linear, shift], axis=-1))


def apply(matrix, x, y):
    return (matrix[:, :2] @ torch.tensor([x, y], dtype=matrix.dtype) + matrix[:, 2]).tolist()


# --- pixel <-> theta ------------------------------------------------------------------------------


@pytest.mark.parametrize("in_shape, out_shape", [((32, 32), (32, 32)), ((40, 25), (30, 60)), ((7, 90), (64, 3))])
def test_pixel_theta_round_trip(rng, in_shape, out_shape):
    matrix = random_affine(rng, batch=(4,))
    theta = pixel_to_theta(matrix, in_shape, out_shape)
    assert theta.shape == (4, 2, 3)
    torch.testing.assert_close(theta_to_pixel(theta, in_shape, out_shape), matrix)
    torch.testing.assert_close(pixel_to_theta(theta_to_pixel(theta, in_shape, out_shape), in_shape, out_shape), theta)


def test_identity_pixel_matrix_on_equal_grids_is_identity_theta():
    identity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=F64)
    torch.testing.assert_close(pixel_to_theta(identity, (20, 30), (20, 30)), identity)
    # on a grid twice as large, the same pixel matrix reads only the first half of the input
    expected = torch.tensor([[2.0, 0.0, 1.0], [0.0, 2.0, 1.0]], dtype=F64)
    torch.testing.assert_close(pixel_to_theta(identity, (20, 30), (40, 60)), expected)


@pytest.mark.parametrize("in_shape, out_shape", [((24, 36), (24, 36)), ((50, 20), (18, 33))])
def test_theta_matches_affine_grid_on_pixel_centres(rng, in_shape, out_shape):
    matrix = random_affine(rng)
    theta = pixel_to_theta(matrix, in_shape, out_shape)
    grid = F.affine_grid(theta[None], [1, 1, *out_shape], align_corners=False)[0]  # (H', W', 2), normalised x, y
    in_height, in_width = in_shape
    for row, col in [(0, 0), (3, 7), (out_shape[0] - 1, out_shape[1] - 1)]:
        normalised = grid[row, col]
        sampled_pixel = [(normalised[0] + 1) * in_width / 2, (normalised[1] + 1) * in_height / 2]
        np.testing.assert_allclose(sampled_pixel, apply(matrix, col + 0.5, row + 0.5), atol=1e-9)


def test_invert_and_compose(rng):
    matrix = random_affine(rng, batch=(3,))
    identity = torch.eye(2, 3, dtype=F64).expand(3, 2, 3)
    torch.testing.assert_close(compose_affine(matrix, invert_affine(matrix)), identity)
    torch.testing.assert_close(compose_affine(invert_affine(matrix), matrix), identity)
    shift = translation_matrix(3.0, -1.0, dtype=F64)
    scale = rotation_matrix(0.0, (0.0, 0.0), scale=2.0, dtype=F64)
    # compose_affine(outer, inner) applies inner first: (1, 1) -> (4, 0) -> (8, 0)
    np.testing.assert_allclose(apply(compose_affine(scale, shift), 1.0, 1.0), [8.0, 0.0])


def test_rotation_matrix_by_hand():
    matrix = rotation_matrix(90.0, (10.0, 10.0), scale=2.0, dtype=F64)
    # p -> R(90) * 2 * (p - c) + c with R(90) = [[0, -1], [1, 0]]: (13, 10) -> (10, 16)
    np.testing.assert_allclose(apply(matrix, 13.0, 10.0), [10.0, 16.0], atol=1e-12)
    np.testing.assert_allclose(apply(matrix, 10.0, 10.0), [10.0, 10.0], atol=1e-12)
    moved = rotation_matrix(30.0, (5.0, 6.0), in_centre=(1.0, 2.0), dtype=F64)
    np.testing.assert_allclose(apply(moved, 5.0, 6.0), [1.0, 2.0], atol=1e-12)
    assert image_centre((40, 30)) == (15.0, 20.0)


# --- affine_warp ----------------------------------------------------------------------------------


def test_identity_warp_returns_the_image(rng):
    image = torch.from_numpy(rng.random((2, 3, 17, 23)))
    identity = torch.eye(2, 3, dtype=F64)
    torch.testing.assert_close(affine_warp(image, identity, (17, 23)), image)


def test_integer_translation_is_a_shift_with_zeros(rng):
    image = torch.from_numpy(rng.random((1, 1, 12, 15)))
    warped = affine_warp(image, translation_matrix(3.0, -2.0, dtype=F64), (12, 15))[0, 0].numpy()
    expected = np.zeros((12, 15))
    expected[2:, :12] = image[0, 0, :10, 3:].numpy()  # output (i, j) reads input (i - 2, j + 3)
    np.testing.assert_allclose(warped, expected, atol=1e-12)


def test_different_input_and_output_grids(rng):
    image = torch.from_numpy(rng.random((1, 2, 8, 10)))
    identity = torch.eye(2, 3, dtype=F64)
    larger = affine_warp(image, identity, (11, 16))
    assert larger.shape == (1, 2, 11, 16)
    torch.testing.assert_close(larger[..., :8, :10], image)
    assert larger[..., 8:, :].abs().max() == 0 and larger[..., :, 10:].abs().max() == 0
    torch.testing.assert_close(affine_warp(image, identity, (5, 4)), image[..., :5, :4])
    # a factor-2 scale reads the corner where four input pixels meet: 2 x 2 block means
    halve = rotation_matrix(0.0, (0.0, 0.0), scale=2.0, dtype=F64)
    blocks = image.reshape(1, 2, 4, 2, 5, 2).mean(dim=(3, 5))
    torch.testing.assert_close(affine_warp(image, halve, (4, 5)), blocks)


def test_positive_angle_turns_content_counter_clockwise_on_screen():
    image = torch.zeros(1, 1, 21, 21, dtype=F64)
    image[0, 0, 10, 16] = 1.0  # right of the centre pixel (10, 10)
    warped = affine_warp(image, rotation_matrix(90.0, image_centre((21, 21)), dtype=F64), (21, 21))[0, 0]
    row, col = np.unravel_index(int(warped.argmax()), warped.shape)
    assert (row, col) == (4, 10)  # now above the centre
    assert float(warped.max()) == pytest.approx(1.0)


def test_warp_is_differentiable_in_the_matrix(rng):
    image = torch.from_numpy(rng.random((1, 1, 16, 16)))
    matrix = rotation_matrix(10.0, (8.0, 8.0), dtype=F64).requires_grad_()
    affine_warp(image, matrix, (12, 20)).sum().backward()
    assert torch.isfinite(matrix.grad).all() and matrix.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "angle, scale, shift, in_shape, out_shape, tightness",
    [
        (30.0, 1.0, (0.0, 0.0), (64, 64), (64, 64), 1.0),
        (45.0, 0.8, (4.0, -3.0), (64, 64), (64, 64), 1.0),
        (-60.0, 1.3, (-5.0, 6.0), (60, 80), (70, 50), 1.0),
        (135.0, 1.5, (2.5, 1.5), (48, 40), (80, 90), 1.0),
        # anisotropic scale after the rotation shears the square: its acute corners fade below 0.5
        # over more than a pixel, so the bright pixels stop short of the carried box's edge there
        (-60.0, (1.3, 0.7), (-5.0, 6.0), (60, 80), (70, 50), 2.5),
    ],
)
def test_warping_and_box_transform_agree(angle, scale, shift, in_shape, out_shape, tightness):
    image = torch.zeros(1, 1, *in_shape, dtype=F64)
    image[0, 0, 20:31, 14:27] = 1.0
    square_box = box_from_mask(image[0, 0].numpy())
    sampling = compose_affine(
        translation_matrix(*shift, dtype=F64),
        rotation_matrix(angle, image_centre(out_shape), scale, in_centre=image_centre(in_shape), dtype=F64),
    )
    warped = affine_warp(image, sampling, out_shape)[0, 0].numpy()
    carried = transform_boxes(invert_affine(sampling), torch.from_numpy(square_box)).numpy()
    bright = box_from_mask(warped >= 0.5)
    # the centre of every bright pixel lies inside the carried box, whose edges are within a pixel of them
    assert np.all(bright[:2] + 0.5 >= carried[:2] - 1e-9) and np.all(bright[2:] - 0.5 <= carried[2:] + 1e-9)
    np.testing.assert_array_less(np.abs(bright - carried), tightness)
    # pixels whose centre lies outside the carried box stay dark
    x = np.arange(out_shape[1]) + 0.5
    y = np.arange(out_shape[0]) + 0.5
    outside = (x[None] < carried[0]) | (x[None] > carried[2]) | (y[:, None] < carried[1]) | (y[:, None] > carried[3])
    assert warped[outside].max() < 0.5


# --- support and overlap ------------------------------------------------------------------------


def test_support_of_an_integer_translation_by_hand():
    # output pixel (i, j) reads input position (j + 0.5 + 3, i + 0.5 - 2) of an 8-wide, 6-high input
    support = warped_support((6, 8), translation_matrix(3.0, -2.0, dtype=F64), (6, 8))
    expected = np.zeros((6, 8), dtype=bool)
    expected[2:, :5] = True
    assert support.shape == (1, 1, 6, 8) and support.dtype == torch.bool
    np.testing.assert_array_equal(support[0, 0].numpy(), expected)
    ones = affine_warp(torch.ones(1, 1, 6, 8, dtype=F64), translation_matrix(3.0, -2.0, dtype=F64), (6, 8))
    np.testing.assert_array_equal(ones[0, 0].numpy() == 1.0, expected)


def test_support_margin_excludes_pixels_blended_with_padding():
    half_shift = translation_matrix(0.5, 0.0, dtype=F64)  # output column j reads x = j + 1 (between pixels)
    full = warped_support((4, 6), half_shift, (4, 6))[0, 0].numpy()
    inner = warped_support((4, 6), half_shift, (4, 6), margin=0.5)[0, 0].numpy()
    np.testing.assert_array_equal(full.all(axis=0), [True] * 6)  # x = 6 is on the input's edge
    np.testing.assert_array_equal(inner.all(axis=0), [True] * 5 + [False])
    ones = affine_warp(torch.ones(1, 1, 4, 6, dtype=F64), half_shift, (4, 6))[0, 0].numpy()
    np.testing.assert_array_equal(ones == 1.0, inner)


def test_support_of_a_rotation_and_a_batch(rng):
    in_shape, out_shape = (30, 20), (25, 35)
    matrices = torch.stack([rotation_matrix(a, image_centre(out_shape), 1.2, image_centre(in_shape), F64)
                            for a in (0.0, 45.0)])
    support = warped_support(in_shape, matrices, out_shape)
    assert support.shape == (2, 1, *out_shape)
    centres = pixel_centres(out_shape, dtype=F64)
    for k in range(2):
        source = centres @ matrices[k, :, :2].T + matrices[k, :, 2]
        inside = (source[:, 0] >= 0) & (source[:, 0] <= 20) & (source[:, 1] >= 0) & (source[:, 1] <= 30)
        np.testing.assert_array_equal(support[k, 0].reshape(-1).numpy(), inside.numpy())
    # a warped all-ones image is at least 0.25 (a corner) on the support, below 0.5 off it, 1 half a pixel
    # further in and 0 half a pixel further out
    ones = affine_warp(torch.ones(2, 1, *in_shape, dtype=F64), matrices, out_shape)
    assert ones[support].min() >= 0.25 - 1e-9 and ones[~support].max() < 0.5
    assert ones[warped_support(in_shape, matrices, out_shape, margin=0.5)].min() == pytest.approx(1.0)
    assert ones[~warped_support(in_shape, matrices, out_shape, margin=-0.5)].max() == 0.0


def test_overlap_mask_by_hand():
    in_shape, out_shape = (6, 8), (6, 8)
    shift = translation_matrix(3.0, -2.0, dtype=F64)  # support: rows 2..5, columns 0..4
    fixed_region = np.zeros(out_shape, dtype=bool)
    fixed_region[:, 3:] = True  # the fixed image's own region, e.g. its foreground
    overlap = overlap_mask(in_shape, shift, out_shape, fixed_region=torch.from_numpy(fixed_region))
    expected = np.zeros(out_shape, dtype=bool)
    expected[2:, 3:5] = True
    np.testing.assert_array_equal(overlap[0, 0].numpy(), expected)
    # the moving image's own region, carried by the warp: input rows 0..1, columns 4..7 land on rows 2..3, 1..4
    moving_region = np.zeros(in_shape, dtype=bool)
    moving_region[:2, 4:] = True
    overlap = overlap_mask(in_shape, shift, out_shape, torch.from_numpy(fixed_region), torch.from_numpy(moving_region))
    expected = np.zeros(out_shape, dtype=bool)
    expected[2:4, 3:5] = True
    np.testing.assert_array_equal(overlap[0, 0].numpy(), expected)
    # one moving region for a batch of two matrices (the shift, then the identity)
    both = torch.stack([shift, torch.eye(2, 3, dtype=F64)])
    batched = overlap_mask(in_shape, both, out_shape, torch.from_numpy(fixed_region), torch.from_numpy(moving_region))
    assert batched.shape == (2, 1, *out_shape)
    np.testing.assert_array_equal(batched[0, 0].numpy(), expected)
    np.testing.assert_array_equal(batched[1, 0].numpy(), moving_region & fixed_region)
    # without regions the overlap is the support
    torch.testing.assert_close(overlap_mask(in_shape, shift, out_shape), warped_support(in_shape, shift, out_shape))
    with pytest.raises(ValueError, match="fixed_region"):
        overlap_mask(in_shape, shift, out_shape, fixed_region=torch.ones(5, 8))


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"\(\.\.\., 2, 3\)"):
        pixel_to_theta(torch.eye(3), (4, 4), (4, 4))
    with pytest.raises(ValueError, match="positive sizes"):
        affine_warp(torch.ones(1, 1, 4, 4), torch.eye(2, 3), (0, 4))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        affine_warp(torch.ones(4, 4), torch.eye(2, 3), (4, 4))
    with pytest.raises(ValueError, match="3 matrices for a batch of 2"):
        affine_warp(torch.ones(2, 1, 4, 4), torch.eye(2, 3).expand(3, 2, 3), (4, 4))


# --- masked MSE -----------------------------------------------------------------------------------


def numpy_masked_mse(warped, fixed, mask):
    values = []
    for w, f, m in zip(warped, fixed, mask):
        m = np.broadcast_to(m, w.shape)
        values.append(((w - f) ** 2)[m].mean() if m.any() else 0.0)
    return np.array(values)


def test_masked_mse_against_numpy(rng):
    warped = rng.random((3, 3, 12, 10))
    fixed = rng.random((3, 3, 12, 10))
    mask = rng.random((3, 1, 12, 10)) > 0.6
    mask[2] = False  # one empty mask
    expected = numpy_masked_mse(warped, fixed, mask)
    args = torch.from_numpy(warped), torch.from_numpy(fixed), torch.from_numpy(mask)
    np.testing.assert_allclose(masked_mse(*args, reduction="none").numpy(), expected)
    assert float(masked_mse(*args)) == pytest.approx(expected.mean())
    assert float(masked_mse(*args, reduction="sum")) == pytest.approx(expected.sum())
    # a full mask is the plain MSE; a per-channel mask counts only the channels it covers
    full = torch.ones(3, 1, 12, 10, dtype=torch.bool)
    assert float(masked_mse(args[0], args[1], full)) == pytest.approx(((warped - fixed) ** 2).mean())
    assert float(mse(args[0], args[1])) == pytest.approx(((warped - fixed) ** 2).mean())
    channel_mask = rng.random((3, 3, 12, 10)) > 0.5
    np.testing.assert_allclose(
        masked_mse(args[0], args[1], torch.from_numpy(channel_mask), reduction="none").numpy(),
        numpy_masked_mse(warped, fixed, channel_mask),
    )


def test_masked_mse_weights_and_empty_mask_gradient(rng):
    warped = torch.from_numpy(rng.random((1, 1, 5, 5))).requires_grad_()
    fixed = torch.from_numpy(rng.random((1, 1, 5, 5)))
    weights = torch.from_numpy(rng.random((1, 1, 5, 5)))
    expected = float((weights * (warped.detach() - fixed) ** 2).sum() / weights.sum())
    assert float(masked_mse(warped, fixed, weights).detach()) == pytest.approx(expected)
    empty = masked_mse(warped, fixed, torch.zeros(1, 1, 5, 5, dtype=torch.bool))
    empty.backward()
    assert float(empty.detach()) == 0.0 and torch.isfinite(warped.grad).all() and warped.grad.abs().max() == 0
    with pytest.raises(ValueError, match="differ in shape"):
        masked_mse(warped, fixed[..., :4], weights)
    with pytest.raises(ValueError, match="reduction"):
        masked_mse(warped, fixed, weights, reduction="max")


def test_masked_mse_over_the_overlap_of_a_warp(rng):
    fixed = torch.from_numpy(rng.random((1, 1, 20, 24)))
    moving = torch.from_numpy(rng.random((1, 1, 16, 30)))
    matrix = rotation_matrix(20.0, image_centre((20, 24)), 1.1, image_centre((16, 30)), F64)
    warped = affine_warp(moving, matrix, (20, 24))
    mask = overlap_mask((16, 30), matrix, (20, 24), margin=0.5)
    inside = mask[0, 0].numpy()
    expected = ((warped - fixed)[0, 0].numpy()[inside] ** 2).mean()
    assert 0 < inside.sum() < inside.size
    assert float(masked_mse(warped, fixed, mask)) == pytest.approx(expected)
    assert math.isfinite(float(mse(warped, fixed)))
