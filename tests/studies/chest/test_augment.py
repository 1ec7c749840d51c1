"""Shape augmentation of label maps."""

import numpy as np
import pytest
from scipy import ndimage

from medrepro.studies.chest.augment import augment_masks, random_shape_variant
from support.phantoms import make_phantom


@pytest.fixture
def labels():
    return make_phantom(64, seed=0)[1]


def test_no_variation_is_the_identity(labels):
    rng = np.random.default_rng(0)
    same = random_shape_variant(labels, rng, max_angle_deg=0, max_scale=0, max_shift=0, elastic_magnitude=0)
    np.testing.assert_array_equal(same, labels)


def test_pure_shift_matches_scipy_shift(labels):
    """With rotation, scaling and the elastic field off, a variant is a plain translation."""
    side = labels.shape[0]
    replay = np.random.default_rng(5)
    replay.uniform(), replay.uniform()  # the angle and scale draws come first
    shift = replay.uniform(-0.1, 0.1, 2) * side
    moved = random_shape_variant(labels, np.random.default_rng(5), max_angle_deg=0, max_scale=0, max_shift=0.1,
                                 elastic_magnitude=0)
    expected = ndimage.shift(labels, shift, order=0, mode="constant", cval=0)
    assert (moved == expected).mean() > 0.995


def test_variants_keep_the_label_set_and_change_shapes(labels):
    variants = augment_masks(labels[None], 6, seed=1)
    assert variants.shape == (6, *labels.shape) and variants.dtype == labels.dtype
    for v in variants:
        assert set(np.unique(v)) <= set(np.unique(labels))
        assert 0.5 < (v > 0).sum() / (labels > 0).sum() < 1.6
        assert (v != labels).mean() > 0.005


def test_deterministic_and_cycles_through_inputs(labels):
    stack = np.stack([labels, np.fliplr(labels)])
    first = augment_masks(stack, 4, seed=3)
    np.testing.assert_array_equal(first, augment_masks(stack, 4, seed=3))
    assert not np.array_equal(first, augment_masks(stack, 4, seed=4))
    assert augment_masks(stack, 0, seed=3).shape == (0, *labels.shape)
