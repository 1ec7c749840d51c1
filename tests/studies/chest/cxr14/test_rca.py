"""Reverse classification accuracy with a single-atlas registration classifier."""

import numpy as np
import pytest

from medrepro.studies.chest.cxr14.rca import batch_mean_dice, mean_foreground_dice, rca_scores
from medrepro.metrics.overlap import dice
from support.phantoms import ConstantField

SIZE, N_CLASSES = 32, 4
FOREGROUND = (1, 2, 3)


# rectangles (label, rows, cols) with widths 8, 10 and 6
LAYOUT_A = [(1, (4, 20), (2, 10)), (2, (4, 20), (18, 28)), (3, (20, 28), (12, 18))]
LAYOUT_B = [(1, (2, 14), (4, 14)), (2, (2, 14), (18, 28)), (3, (16, 30), (10, 20))]
LAYOUT_C = [(1, (8, 26), (1, 12)), (2, (8, 26), (16, 31)), (3, (26, 31), (8, 24))]


def draw(layout, shift: int = 0) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
    for label, (r0, r1), (c0, c1) in layout:
        mask[r0:r1, c0 + shift:c1 + shift] = label
    return mask


@pytest.fixture(scope="module")
def references():
    rng = np.random.default_rng(0)
    labels = np.stack([draw(LAYOUT_A), draw(LAYOUT_B), draw(LAYOUT_C)])
    images = (labels / 4.0 + rng.normal(0, 0.02, labels.shape)).astype(np.float32)
    return images, labels


def test_mean_foreground_dice_agrees_with_overlap_dice():
    rng = np.random.default_rng(1)
    a = rng.integers(0, N_CLASSES, (12, 12))
    b = rng.integers(0, N_CLASSES, (12, 12))
    expected = np.mean([dice(a == label, b == label) for label in FOREGROUND])
    assert mean_foreground_dice(a, b, FOREGROUND) == pytest.approx(expected)
    assert mean_foreground_dice(a, a, FOREGROUND) == 1.0


def test_mean_foreground_dice_counts_a_label_absent_from_both_as_one():
    a = draw(LAYOUT_A)
    b = draw(LAYOUT_A, shift=2)
    lungs_only_a, lungs_only_b = np.where(a == 3, 0, a), np.where(b == 3, 0, b)
    assert mean_foreground_dice(lungs_only_a, lungs_only_b, FOREGROUND) == pytest.approx((6 / 8 + 8 / 10 + 1.0) / 3)
    assert mean_foreground_dice(np.zeros((4, 4)), np.zeros((4, 4)), FOREGROUND) == 1.0
    with pytest.raises(ValueError):
        mean_foreground_dice(a, b, [])


def test_batch_mean_dice_matches_the_single_pair_version():
    rng = np.random.default_rng(2)
    a = rng.integers(0, N_CLASSES, (20, 10, 10))
    b = rng.integers(0, N_CLASSES, (20, 10, 10))
    a[3] = 0  # empty maps on one or both sides
    b[3] = 0
    b[4] = 0
    expected = [mean_foreground_dice(x, y, FOREGROUND) for x, y in zip(a, b)]
    np.testing.assert_allclose(batch_mean_dice(a, b, FOREGROUND), expected, rtol=1e-12)


def test_exact_mask_of_a_reference_scores_one(references):
    ref_images, ref_labels = references
    model = ConstantField()
    result = rca_scores(model, ref_images[[2, 0]], ref_labels[[2, 0]], ref_images, ref_labels, N_CLASSES)
    np.testing.assert_array_equal(result.predicted_dice, [1.0, 1.0])
    np.testing.assert_array_equal(result.best_reference, [2, 0])
    assert result.all_dice.shape == (2, 3) and result.all_dice.dtype == np.float32
    assert (result.all_dice[0, :2] < 1).all() and (result.all_dice[1, 1:] < 1).all()


@pytest.mark.parametrize("shift", [1, 2, 3])
def test_shifted_mask_gives_the_analytic_dice(references, shift):
    ref_images, ref_labels = references
    predicted = draw(LAYOUT_A, shift=shift)[None]
    result = rca_scores(ConstantField(), ref_images[:1], predicted, ref_images, ref_labels, N_CLASSES, batch_size=2)
    # a rectangle of width w shifted sideways by s pixels overlaps its original by (w - s) / w
    analytic = np.mean([(8 - shift) / 8, (10 - shift) / 10, (6 - shift) / 6])
    assert result.all_dice[0, 0] == pytest.approx(analytic, rel=1e-6)
    for r in range(3):
        assert result.all_dice[0, r] == pytest.approx(mean_foreground_dice(predicted[0], ref_labels[r], FOREGROUND))
    assert result.best_reference[0] == 0
    assert result.predicted_dice[0] == pytest.approx(analytic, rel=1e-6)


def test_the_predicted_mask_is_warped_by_the_displacement(references):
    ref_images, ref_labels = references
    # output pixel x reads the moving mask at x + 2: a mask drawn 2 px to the right lands back on reference 0
    predicted = draw(LAYOUT_A, shift=2)[None]
    result = rca_scores(ConstantField(dx=2.0), ref_images[:1], predicted, ref_images, ref_labels, N_CLASSES)
    assert result.all_dice[0, 0] == 1.0 and result.best_reference[0] == 0


def test_pairs_are_image_to_reference_in_bounded_batches(references):
    ref_images, ref_labels = references
    rng = np.random.default_rng(3)
    images = rng.random((4, SIZE, SIZE)).astype(np.float32)
    predicted = rng.integers(0, N_CLASSES, (4, SIZE, SIZE)).astype(np.uint8)
    model = ConstantField()
    result = rca_scores(model, images, predicted, ref_images, ref_labels, N_CLASSES, batch_size=5)
    assert [len(m) for m, _ in model.calls] == [5, 5, 2]
    moving = np.concatenate([m for m, _ in model.calls])
    fixed = np.concatenate([f for _, f in model.calls])
    np.testing.assert_array_equal(moving, np.repeat(images, 3, axis=0))
    np.testing.assert_array_equal(fixed, np.tile(ref_images, (4, 1, 1)))
    expected = np.array([[mean_foreground_dice(p, r, FOREGROUND) for r in ref_labels] for p in predicted])
    np.testing.assert_allclose(result.all_dice, expected, rtol=1e-6)
    np.testing.assert_array_equal(result.best_reference, expected.argmax(axis=1))
    np.testing.assert_allclose(result.predicted_dice, expected.max(axis=1), rtol=1e-6)


def test_ties_between_references_go_to_the_lower_index(references):
    ref_images, ref_labels = references
    twice = np.concatenate([ref_labels[[1]], ref_labels])  # references 0 and 2 are identical
    images = np.concatenate([ref_images[[1]], ref_images])
    result = rca_scores(ConstantField(), images[2:3], twice[2:3], images, twice, N_CLASSES)
    assert result.best_reference[0] == 0 and result.predicted_dice[0] == 1.0


def test_rca_validates_shapes(references):
    ref_images, ref_labels = references
    with pytest.raises(ValueError):
        rca_scores(ConstantField(), ref_images, ref_labels[:2], ref_images, ref_labels, N_CLASSES)
