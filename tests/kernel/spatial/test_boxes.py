"""Boxes against MONAI's box utilities and hand computations; boxes carried through affine maps."""

import math

import numpy as np
import pytest
import torch
from monai.data import box_utils as monai_boxes
from monai.losses import BoxGIoULoss

from medrepro.nn import losses
from medrepro.spatial.boxes import (
    box_area,
    box_centre,
    box_corners,
    box_from_mask,
    box_giou,
    box_iou,
    boxes_overlap,
    centre_distance,
    giou_loss,
    rectify_corners,
    transform_boxes,
    transform_points,
)
from medrepro.errors import DataError


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def random_boxes(rng, n, low=0.0, high=50.0, max_size=30.0):
    corner = rng.uniform(low, high, size=(n, 2))
    size = rng.uniform(0.5, max_size, size=(n, 2))
    return np.concatenate([corner, corner + size], axis=1)


# Hand cases: (a, b, intersection, union, enclosing area); GIoU = I/U - (C - U)/C.
HAND_CASES = {
    "identical": ([0, 0, 4, 2], [0, 0, 4, 2], 8, 8, 8),
    "overlapping": ([0, 0, 2, 2], [1, 1, 3, 3], 1, 7, 9),
    "nested": ([0, 0, 10, 10], [2, 3, 5, 7], 12, 100, 100),
    "disjoint": ([0, 0, 1, 1], [3, 0, 4, 1], 0, 2, 4),
    "disjoint diagonal": ([0, 0, 1, 1], [2, 2, 3, 3], 0, 2, 9),
    "touching edge": ([0, 0, 2, 2], [2, 0, 4, 2], 0, 8, 8),
    "touching corner": ([0, 0, 1, 1], [1, 1, 2, 2], 0, 2, 4),
    "zero-area inside": ([1, 1, 1, 3], [0, 0, 4, 4], 0, 16, 16),
    "two zero-area apart": ([0, 0, 0, 2], [3, 1, 3, 5], 0, 0, 15),
}


def hand_giou(inter, union, enclosing):
    iou = inter / union if union > 0 else 0.0
    penalty = (enclosing - union) / enclosing if enclosing > 0 else 0.0
    return iou - penalty


@pytest.mark.parametrize("name", list(HAND_CASES))
def test_giou_matches_hand_computation_and_monai(name):
    a, b, inter, union, enclosing = HAND_CASES[name]
    a = np.array([a], dtype=np.float64)
    b = np.array([b], dtype=np.float64)
    expected = hand_giou(inter, union, enclosing)
    np.testing.assert_allclose(box_giou(a, b), [expected], atol=1e-12)
    np.testing.assert_allclose(box_giou(b, a), [expected], atol=1e-12)
    np.testing.assert_allclose(giou_loss(a, b), [1.0 - expected], atol=1e-12)
    np.testing.assert_allclose(box_iou(a, b), [inter / union if union else 0.0], atol=1e-12)
    np.testing.assert_allclose(box_area(a), [(a[0, 2] - a[0, 0]) * (a[0, 3] - a[0, 1])])
    # MONAI computes in float32 with eps = 1.2e-7 in the denominators
    np.testing.assert_allclose(monai_boxes.box_pair_giou(a, b), [expected], atol=1e-6)


def test_identical_boxes_score_one_and_disjoint_boxes_follow_two_minus_u_over_c():
    box = np.array([3.5, 1.0, 9.0, 4.25])
    assert box_giou(box, box) == pytest.approx(1.0)
    assert giou_loss(box, box) == pytest.approx(0.0)
    far = box + np.array([20.0, 0.0, 20.0, 0.0])
    union = 2 * box_area(box)
    enclosing = (far[2] - box[0]) * (box[3] - box[1])
    assert giou_loss(box, far) == pytest.approx(2.0 - union / enclosing)


def test_giou_and_iou_match_monai_on_random_boxes(rng):
    a = random_boxes(rng, 40)
    b = random_boxes(rng, 40)
    np.testing.assert_allclose(box_giou(a, b), monai_boxes.box_pair_giou(a, b), atol=1e-6)
    np.testing.assert_allclose(box_giou(a[:, None], b[None]), monai_boxes.box_giou(a, b), atol=1e-6)
    np.testing.assert_allclose(box_iou(a[:, None], b[None]), monai_boxes.box_iou(a, b), atol=1e-6)
    np.testing.assert_allclose(box_area(a), monai_boxes.box_area(a), rtol=1e-12)
    np.testing.assert_allclose(box_centre(a), monai_boxes.box_centers(a), rtol=1e-12)
    giou = box_giou(a, b)
    assert np.all((giou >= -1) & (giou <= 1))
    assert np.all(giou <= box_iou(a, b) + 1e-12)  # the enclosure penalty is never negative


def test_giou_loss_reduction_matches_monai_box_giou_loss(rng):
    a = torch.from_numpy(random_boxes(rng, 16))
    b = torch.from_numpy(random_boxes(rng, 16))
    reference = BoxGIoULoss(reduction="mean")(a.float(), b.float())
    assert float(losses.giou_loss(a, b)) == pytest.approx(float(reference), abs=1e-6)
    assert float(losses.giou_loss(a, b, reduction="sum")) == pytest.approx(float(giou_loss(a, b).sum()))
    assert losses.giou_loss(a, b, reduction="none").shape == (16,)
    with pytest.raises(ValueError, match="reduction"):
        losses.giou_loss(a, b, reduction="median")


def test_numpy_in_numpy_out_and_torch_in_torch_out(rng):
    a, b = random_boxes(rng, 5), random_boxes(rng, 5)
    assert isinstance(box_giou(a, b), np.ndarray)
    tensor = box_giou(torch.from_numpy(a).float(), b)
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32
    np.testing.assert_allclose(tensor.numpy(), box_giou(a, b), atol=1e-5)
    with pytest.raises(ValueError, match="last axis of 4"):
        box_giou(a[:, :3], b[:, :3])


@pytest.mark.parametrize(
    "a, b",
    [
        ([0.0, 0.0, 4.0, 2.0], [0.0, 0.0, 4.0, 2.0]),  # identical
        ([0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]),  # two identical points
        ([0.0, 0.0, 0.0, 2.0], [3.0, 1.0, 3.0, 5.0]),  # two zero-width boxes
        ([1.0, 1.0, 1.0, 3.0], [0.0, 0.0, 4.0, 4.0]),  # zero-width inside
        ([0.0, 0.0, 1.0, 1.0], [5.0, 7.0, 6.0, 9.0]),  # disjoint
        ([0.0, 0.0, 2.0, 2.0], [2.0, 0.0, 4.0, 2.0]),  # touching
    ],
)
def test_gradients_are_finite(a, b):
    a = torch.tensor(a, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    loss = giou_loss(a, b) + centre_distance(a, b) + box_iou(a, b)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


def test_disjoint_boxes_get_a_gradient_that_pulls_them_together():
    a = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([3.0, 0.0, 4.0, 1.0], dtype=torch.float64)
    giou_loss(a, b).backward()
    assert a.grad[0] + a.grad[2] < 0  # shifting a to the right (towards b) lowers the loss


def test_giou_gradient_matches_finite_differences(rng):
    a = torch.from_numpy(random_boxes(rng, 6)).requires_grad_()
    b = torch.from_numpy(random_boxes(rng, 6)).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: box_giou(x, y), (a, b))


def test_overlap_needs_positive_area():
    a = np.array([[0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 10, 10], [0, 0, 1, 1]], dtype=float)
    b = np.array([[1, 1, 3, 3], [2, 0, 4, 2], [2, 2, 3, 3], [2, 2, 3, 3], [5, 5, 6, 6]], dtype=float)
    np.testing.assert_array_equal(boxes_overlap(a, b), [True, False, False, True, False])


def test_centres_and_their_distance():
    a = np.array([0.0, 0.0, 4.0, 2.0])
    b = np.array([3.0, 5.0, 5.0, 9.0])
    np.testing.assert_allclose(box_centre(a), [2.0, 1.0])
    np.testing.assert_allclose(box_centre(b), [4.0, 7.0])
    assert centre_distance(a, b) == pytest.approx(math.hypot(2.0, 6.0))
    assert centre_distance(a, a) == 0.0


# --- box_from_mask ------------------------------------------------------------------------------


def test_box_from_mask_has_an_exclusive_far_edge():
    mask = np.zeros((10, 12), dtype=np.uint8)
    mask[2:5, 3:9] = 255
    mask[7, 4] = 1
    box = box_from_mask(mask)
    np.testing.assert_array_equal(box, [3, 2, 9, 8])
    x1, y1, x2, y2 = box.astype(int)
    assert mask[y1:y2, x1:x2].astype(bool).sum() == mask.astype(bool).sum()
    assert box_area(box) == (9 - 3) * (8 - 2)
    one_pixel = np.zeros((4, 4), dtype=bool)
    one_pixel[1, 2] = True
    np.testing.assert_array_equal(box_from_mask(torch.from_numpy(one_pixel)), [2, 1, 3, 2])
    np.testing.assert_array_equal(box_from_mask(np.ones((3, 5))), [0, 0, 5, 3])


def test_box_from_mask_matches_monai_on_random_masks(rng):
    for _ in range(5):
        mask = np.zeros((30, 40), dtype=bool)
        for _ in range(3):
            y, x = rng.integers(0, 28), rng.integers(0, 38)
            mask[y : y + rng.integers(1, 3), x : x + rng.integers(1, 3)] = True
        rows, cols = np.nonzero(mask)
        np.testing.assert_array_equal(box_from_mask(mask), [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])


def test_box_from_an_empty_mask_names_the_file():
    with pytest.raises(DataError, match=r"roi\.dcm: the mask has no foreground pixel"):
        box_from_mask(np.zeros((5, 5)), path="roi.dcm")
    with pytest.raises(DataError, match="must be 2-D"):
        box_from_mask(np.ones((2, 5, 5)), path="roi.dcm")


# --- boxes through affine maps ------------------------------------------------------------------


def test_corners_go_round_the_box_and_rectify_back():
    box = np.array([1.0, 2.0, 5.0, 7.0])
    corners = box_corners(box)
    np.testing.assert_array_equal(corners, [[1, 2], [5, 2], [5, 7], [1, 7]])
    np.testing.assert_array_equal(rectify_corners(corners), box)


def test_identity_leaves_boxes_unchanged(rng):
    boxes = random_boxes(rng, 7)
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    np.testing.assert_allclose(transform_boxes(identity, boxes), boxes, atol=1e-12)


def test_known_rotation_and_scale_move_corners_as_by_hand():
    # 90 degrees about the origin, then scale 2, then shift (10, 20): (x, y) -> (-2y + 10, 2x + 20)
    matrix = np.array([[0.0, -2.0, 10.0], [2.0, 0.0, 20.0]])
    box = np.array([1.0, 2.0, 4.0, 3.0])
    expected_corners = [[-4 + 10, 2 + 20], [-4 + 10, 8 + 20], [-6 + 10, 8 + 20], [-6 + 10, 2 + 20]]
    np.testing.assert_allclose(transform_points(matrix, box_corners(box)), expected_corners, atol=1e-12)
    np.testing.assert_allclose(transform_boxes(matrix, box), [4, 22, 6, 28], atol=1e-12)
    # 45 degrees about the box centre: a square becomes a diamond whose enclosing box is sqrt(2) wider
    c, s = math.cos(math.pi / 4), math.sin(math.pi / 4)
    square = np.array([0.0, 0.0, 2.0, 2.0])
    rotation = np.array([[c, -s, 1 - (c - s)], [s, c, 1 - (s + c)]])
    r = math.sqrt(2.0)
    np.testing.assert_allclose(transform_boxes(rotation, square), [1 - r, 1 - r, 1 + r, 1 + r], atol=1e-12)


def test_rectified_box_encloses_transformed_corners_and_touches_them(rng):
    for _ in range(20):
        matrix = np.concatenate([rng.normal(size=(2, 2)), rng.uniform(-20, 20, size=(2, 1))], axis=1)
        boxes = random_boxes(rng, 4)
        corners = transform_points(matrix, box_corners(boxes))
        rectified = transform_boxes(matrix, boxes)
        assert np.all(corners[..., 0] >= rectified[:, None, 0] - 1e-9)
        assert np.all(corners[..., 0] <= rectified[:, None, 2] + 1e-9)
        assert np.all(corners[..., 1] >= rectified[:, None, 1] - 1e-9)
        assert np.all(corners[..., 1] <= rectified[:, None, 3] + 1e-9)
        # tight: each edge passes through a corner
        np.testing.assert_allclose(rectified[:, :2], corners.min(axis=1))
        np.testing.assert_allclose(rectified[:, 2:], corners.max(axis=1))


def test_batched_matrices_broadcast_against_boxes(rng):
    matrices = np.stack([np.array([[1.0, 0.0, dx], [0.0, 1.0, 0.0]]) for dx in (0.0, 5.0)])
    boxes = random_boxes(rng, 2)
    moved = transform_boxes(matrices, boxes)
    np.testing.assert_allclose(moved, boxes + np.array([[0, 0, 0, 0], [5, 0, 5, 0]]))
    per_sample = transform_boxes(matrices[:, None], np.stack([boxes, boxes], axis=0))
    assert per_sample.shape == (2, 2, 4)
    np.testing.assert_allclose(per_sample[1], boxes + np.array([5, 0, 5, 0]))


def test_transform_boxes_is_differentiable_in_the_matrix(rng):
    matrix = torch.tensor([[0.9, -0.3, 4.0], [0.35, 1.1, -2.0]], dtype=torch.float64, requires_grad=True)
    boxes = torch.from_numpy(random_boxes(rng, 3))
    target = torch.from_numpy(random_boxes(rng, 3))
    assert torch.autograd.gradcheck(lambda m: transform_boxes(m, boxes), (matrix,))
    loss = losses.giou_loss(transform_boxes(matrix, boxes), target)
    loss.backward()
    assert torch.isfinite(matrix.grad).all() and matrix.grad.abs().sum() > 0
