"""Metrics against medpy 0.5.2 (and the medpy 0.4.0 ASSD formula built from its directed asd)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from medpy.metric import binary as medpy_binary
from scipy.ndimage import binary_erosion, generate_binary_structure

from medrepro.metrics.overlap import dice
from medrepro.metrics.surface import asd, assd, hausdorff, surface, surface_scores

from support.masks import medpy_assd_040, smooth_blob


def assert_like_medpy(a, b, spacing=None) -> None:
    assert dice(a, b) == pytest.approx(medpy_binary.dc(a, b), rel=1e-12)
    assert hausdorff(a, b, spacing) == pytest.approx(medpy_binary.hd(a, b, spacing), rel=1e-12)
    assert assd(a, b, spacing) == pytest.approx(medpy_assd_040(a, b, spacing), rel=1e-12)
    assert asd(a, b, spacing) == pytest.approx(medpy_binary.asd(a, b, spacing), rel=1e-12)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("spacing", [None, (1.0, 1.0), (0.175, 0.175), (0.5, 1.7)])
def test_random_2d_masks_match_medpy(seed, spacing):
    rng = np.random.default_rng(seed)
    a = smooth_blob(rng, (64, 80), sigma=3.0 + seed % 3)
    b = smooth_blob(rng, (64, 80), sigma=3.0 + seed % 3)
    assert a.any() and b.any()
    assert_like_medpy(a, b, spacing)


def test_pooled_medpy_05_assd_differs_from_040_definition():
    """Guards against silently switching to medpy >= 0.5 pooling."""
    a = np.zeros((40, 40), bool)
    b = np.zeros((40, 40), bool)
    a[5:35, 5:35] = True  # long surface
    b[18:21, 18:21] = True  # short surface inside it
    assert assd(a, b) == pytest.approx(medpy_assd_040(a, b))
    assert assd(a, b) != pytest.approx(medpy_binary.assd(a, b))


@pytest.mark.parametrize("spacing", [None, (0.7, 1.3, 2.0)])
def test_random_3d_masks_match_medpy(spacing):
    rng = np.random.default_rng(11)
    a = smooth_blob(rng, (20, 24, 18), sigma=2.5)
    b = smooth_blob(rng, (20, 24, 18), sigma=2.5)
    assert_like_medpy(a, b, spacing)


def test_small_masks_in_large_array_exercise_the_crop():
    a = np.zeros((300, 300), bool)
    b = np.zeros((300, 300), bool)
    a[100:140, 50:90] = True
    b[150:200, 160:170] = True
    assert_like_medpy(a, b, (0.3, 0.9))


def test_masks_touching_the_array_border():
    rng = np.random.default_rng(3)
    a = smooth_blob(rng, (50, 50), sigma=5.0, level=-0.5)
    b = np.zeros((50, 50), bool)
    b[0:30, 0:50] = True
    assert a[0].any() and a[:, -1].any()
    assert_like_medpy(a, b, (1.0, 2.0))


def test_full_array_mask_has_surface_at_the_border():
    a = np.ones((20, 30), bool)
    b = np.zeros((20, 30), bool)
    b[5:15, 5:25] = True
    assert_like_medpy(a, b)
    assert hausdorff(a, b) == pytest.approx(math.hypot(5, 5))  # array corner to square corner


def test_single_pixel_masks():
    a = np.zeros((30, 30), bool)
    b = np.zeros((30, 30), bool)
    a[3, 4] = True
    b[10, 20] = True
    assert_like_medpy(a, b, (2.0, 0.5))
    expected = math.hypot(7 * 2.0, 16 * 0.5)
    assert hausdorff(a, b, (2.0, 0.5)) == pytest.approx(expected)
    assert assd(a, b, (2.0, 0.5)) == pytest.approx(expected)


def test_identical_masks_have_zero_distance_and_unit_dice():
    rng = np.random.default_rng(5)
    a = smooth_blob(rng, (40, 40))
    assert dice(a, a) == 1.0
    assert hausdorff(a, a, (0.3, 0.4)) == 0.0
    assert assd(a, a, (0.3, 0.4)) == 0.0


def test_hand_computed_squares():
    a = np.zeros((20, 20), bool)
    b = np.zeros((20, 20), bool)
    a[2:6, 2:6] = True  # 16 pixels
    b[2:6, 4:8] = True  # shifted 2 columns, overlap 8 pixels
    assert dice(a, b) == pytest.approx(2 * 8 / 32)
    assert hausdorff(a, b) == pytest.approx(2.0)
    assert hausdorff(a, b, (1.0, 3.0)) == pytest.approx(6.0)


def test_non_boolean_inputs_count_nonzero_as_foreground():
    a = np.zeros((10, 10), np.uint8)
    b = np.zeros((10, 10), np.float32)
    a[2:5, 2:5] = 7
    b[3:6, 3:6] = 0.5
    assert_like_medpy(a, b)


def test_surface_matches_scipy_erosion_definition():
    rng = np.random.default_rng(8)
    for shape in [(33, 47), (9, 11, 13)]:
        mask = smooth_blob(rng, shape, sigma=2.0, level=-0.3)
        footprint = generate_binary_structure(mask.ndim, 1)
        expected = mask ^ binary_erosion(mask, structure=footprint, iterations=1)
        np.testing.assert_array_equal(surface(mask), expected)


class TestEmptyMasks:
    def test_both_empty(self):
        empty = np.zeros((10, 10), bool)
        assert dice(empty, empty) == 1.0
        assert hausdorff(empty, empty) == 0.0
        assert assd(empty, empty) == 0.0

    @pytest.mark.parametrize("swap", [False, True])
    def test_one_empty(self, swap):
        empty = np.zeros((10, 10), bool)
        full = np.zeros((10, 10), bool)
        full[2:5, 2:5] = True
        a, b = (full, empty) if swap else (empty, full)
        assert dice(a, b) == 0.0
        assert math.isnan(hausdorff(a, b))
        assert math.isnan(assd(a, b))
        assert math.isnan(asd(a, b))
        with pytest.raises(RuntimeError):  # medpy has no answer here
            medpy_binary.hd(a, b)


class TestBadInput:
    def test_shape_mismatch(self):
        with pytest.raises(ValueError, match="shape"):
            dice(np.zeros((3, 3)), np.zeros((3, 4)))
        with pytest.raises(ValueError, match="shape"):
            hausdorff(np.ones((3, 3)), np.ones((4, 3)))

    @pytest.mark.parametrize("spacing", [(1.0,), (1.0, 0.0), (1.0, float("nan")), (1.0, -2.0), (1.0, 1.0, 1.0)])
    def test_bad_spacing(self, spacing):
        with pytest.raises(ValueError, match="spacing"):
            surface_scores(np.ones((3, 3)), np.ones((3, 3)), spacing)

    def test_scalar_spacing_applies_to_every_axis(self):
        a = np.zeros((20, 20), bool)
        b = np.zeros((20, 20), bool)
        a[5, 5] = b[5, 9] = True
        assert hausdorff(a, b, 0.5) == pytest.approx(2.0)
