"""Jacobian determinants of displacement fields: closed-form fields, folds, and SimpleITK's filter."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy import ndimage

from medrepro.spatial.jacobian import folding_fraction, jacobian_determinant


def grid(*shape: int) -> np.ndarray:
    """Voxel positions (n, *shape), x first, as the fields' channels."""
    return np.stack(np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")[::-1])


def smooth_field(rng, shape, amplitude=1.5, sigma=2.0) -> np.ndarray:
    field = np.stack([ndimage.gaussian_filter(rng.normal(size=shape), sigma) for _ in shape])
    return amplitude * field / np.abs(field).max()


def test_zero_field_has_determinant_one():
    np.testing.assert_allclose(jacobian_determinant(np.zeros((3, 4, 5, 6))), np.ones((4, 5, 6)))
    np.testing.assert_allclose(jacobian_determinant(np.zeros((2, 5, 6))), np.ones((5, 6)))


@pytest.mark.parametrize("scale", [0.5, 1.3, 2.0])
def test_uniform_scaling_gives_the_power_of_the_scale(scale):
    np.testing.assert_allclose(jacobian_determinant((scale - 1) * grid(4, 5, 6)), scale**3, rtol=1e-12)
    np.testing.assert_allclose(jacobian_determinant((scale - 1) * grid(5, 6)), scale**2, rtol=1e-12)


def test_a_shear_preserves_volume():
    positions = grid(5, 6, 7)
    shear = np.zeros_like(positions)
    shear[0] = 0.7 * positions[1] - 0.4 * positions[2]  # u_x depends on y and z only
    shear[1] = 0.3 * positions[2]  # u_y on z only: I + grad u is unit upper triangular
    np.testing.assert_allclose(jacobian_determinant(shear), 1.0, rtol=1e-12)


def test_a_general_linear_field_gives_its_determinant():
    matrix = np.array([[0.2, -0.1, 0.05], [0.3, -0.2, 0.1], [0.0, 0.25, 0.4]])
    field = np.einsum("ij,j...->i...", matrix, grid(4, 5, 6))
    np.testing.assert_allclose(jacobian_determinant(field), np.linalg.det(np.eye(3) + matrix), rtol=1e-12)


def test_a_reflection_folds_every_voxel():
    positions = grid(4, 5, 6)
    mirror = np.zeros_like(positions)
    mirror[0] = -2.0 * positions[0]  # x -> -x
    assert folding_fraction(jacobian_determinant(mirror)) == 1.0
    assert folding_fraction(jacobian_determinant(np.zeros_like(positions))) == 0.0


def test_a_local_fold_is_counted():
    field = np.zeros((3, 6, 6, 10))
    field[0, :, :, 4] = 2.5  # x = 4 lands past x = 5 and 6: neighbours swap order along x
    determinant = jacobian_determinant(field)
    assert 0 < folding_fraction(determinant) < 1
    assert folding_fraction(determinant) == pytest.approx(np.mean(determinant <= 0))
    with pytest.raises(ValueError):
        folding_fraction(np.array([]))


def test_tensors_batches_and_gradients():
    rng = np.random.default_rng(3)
    fields = np.stack([smooth_field(rng, (6, 7, 8)) for _ in range(2)])
    tensor = torch.from_numpy(fields).requires_grad_()
    determinant = jacobian_determinant(tensor)
    assert determinant.shape == (2, 6, 7, 8)
    for b in range(2):
        np.testing.assert_allclose(determinant[b].detach().numpy(), jacobian_determinant(fields[b]), rtol=1e-12)
    determinant.sum().backward()
    assert torch.isfinite(tensor.grad).all()


def test_rejects_fields_of_the_wrong_shape():
    for shape in [(3, 4, 5), (2, 4, 5, 6), (4, 4, 5, 6), (2, 1, 5)]:
        with pytest.raises(ValueError):
            jacobian_determinant(np.zeros(shape))


def sitk_determinant(field: np.ndarray) -> np.ndarray:
    vectors = np.moveaxis(field, 0, -1)  # (..., n) with components x, y (, z): SimpleITK's physical order
    image = sitk.GetImageFromArray(vectors, isVector=True)
    image.SetSpacing([1.0] * field.shape[0])
    return sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(image))


@pytest.mark.parametrize("shape", [(10, 12, 14), (16, 18)])
def test_agrees_with_simpleitk_in_the_interior(shape):
    field = smooth_field(np.random.default_rng(11), shape)
    # SimpleITK differentiates with central differences too but treats the border differently
    interior = (slice(1, -1),) * len(shape)
    np.testing.assert_allclose(jacobian_determinant(field)[interior], sitk_determinant(field)[interior],
                               rtol=1e-5, atol=1e-6)
