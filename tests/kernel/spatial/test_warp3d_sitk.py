"""The 3-D dense warp against closed-form shifts and SimpleITK's displacement-field resampling."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy import ndimage

from medrepro.spatial.warp import warp

SHAPE = (10, 12, 14)  # (D, H, W) = (z, y, x), all different so that swapped axes show


@pytest.fixture
def rng():
    return np.random.default_rng(17)


def warp_numpy(image: np.ndarray, field: np.ndarray) -> np.ndarray:
    return warp(torch.from_numpy(image)[None, None], torch.from_numpy(field)[None])[0, 0].numpy()


def sitk_warp(image: np.ndarray, field: np.ndarray) -> np.ndarray:
    """SimpleITK linear resampling of ``image`` at p + field(p), spacing 1, 0 outside."""
    moving = sitk.GetImageFromArray(image)
    vectors = sitk.GetImageFromArray(np.moveaxis(field, 0, -1).astype(np.float64), isVector=True)
    # with unit spacing and origin 0 the channels (x, y, z) are already physical vectors
    transform = sitk.DisplacementFieldTransform(vectors)
    resampled = sitk.Resample(moving, moving, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat64)
    return sitk.GetArrayFromImage(resampled)


def test_zero_field_is_the_identity(rng):
    image = rng.random(SHAPE)
    np.testing.assert_allclose(warp_numpy(image, np.zeros((3, *SHAPE))), image, atol=1e-12)


def test_constant_integer_field_is_an_exact_shift(rng):
    image = rng.random(SHAPE)
    field = np.zeros((3, *SHAPE))
    field[0], field[1], field[2] = 2, -1, 3  # read from x + 2, y - 1, z + 3
    expected = np.zeros(SHAPE)
    expected[:-3, 1:, :-2] = image[3:, :-1, 2:]
    np.testing.assert_allclose(warp_numpy(image, field), expected, atol=1e-12)


def test_agrees_with_simpleitk_resampling_in_the_interior(rng):
    image = ndimage.gaussian_filter(rng.random(SHAPE), 1.0)
    field = np.stack([ndimage.gaussian_filter(rng.normal(size=SHAPE), 2.0) for _ in range(3)])
    field *= 1.8 / np.abs(field).max()
    ours, theirs = warp_numpy(image, field), sitk_warp(image, field)
    # compare where every sample position lies inside the image, so that neither side reads its padding
    positions = np.stack(np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")[::-1]) + field
    sizes = np.array(SHAPE[::-1]).reshape(3, 1, 1, 1)
    inside = np.all((positions >= 0) & (positions <= sizes - 1), axis=0)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(ours[inside], theirs[inside], rtol=1e-4, atol=1e-6)
