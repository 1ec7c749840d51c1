"""ANTs registration wrapper: directions, axes and units checked against known mappings.

Moving images are made from the fixed one by ``scipy.ndimage.shift`` (a known
shift) or by our own ``warp`` (a known smooth field), so the true mapping is
known in voxels. Shifts and grid sizes differ on every axis, so a swapped
axis or sign fails. Volumes are small and iterations few to stay fast.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from medrepro.spatial import ants as A
from medrepro.spatial.warp import warp

SHAPE = (32, 36, 40)  # (z, y, x)
SHIFT_ZYX = (1.3, -2.4, 3.1)
SHIFT_XYZ = np.array(SHIFT_ZYX[::-1])
# GC: Mattes MI falls into local optima on these smooth random blobs.
FAST_LINEAR = dict(aff_metric="GC", aff_iterations=(100, 50), aff_shrink_factors=(2, 1),
                   aff_smoothing_sigmas=(1.0, 0.0))
INTERIOR = (slice(6, -6),) * 3


# ------------------------------------------------------------------ helpers
def smooth_volume(shape, seed: int) -> np.ndarray:
    """Positive smooth random blobs (ANTs' centre-of-mass start needs positive intensities)."""
    noise = ndi.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), 2.5)
    return ((noise - noise.min()) / noise.std() + 1.0).astype(np.float32)


def smooth_field(shape, amplitude: float, seed: int) -> np.ndarray:
    """A smooth (3, D, H, W) displacement in voxels, at most ``amplitude`` per channel."""
    rng = np.random.default_rng(seed)
    field = np.stack([ndi.gaussian_filter(rng.standard_normal(shape), 6.0) for _ in range(3)])
    return (amplitude * field / np.abs(field).max()).astype(np.float32)


def warp_np(volume: np.ndarray, displacement: np.ndarray) -> np.ndarray:
    image = torch.from_numpy(volume)[None, None]
    return warp(image, torch.from_numpy(displacement)[None], padding_mode="border")[0, 0].numpy()


def field_at(displacement: np.ndarray, points_xyz: np.ndarray) -> np.ndarray:
    """Trilinear samples (n, 3) of a (3, D, H, W) field at (x, y, z) voxel points."""
    coords = points_xyz[:, ::-1].T  # map_coordinates reads (z, y, x)
    return np.stack([ndi.map_coordinates(channel, coords, order=1) for channel in displacement], axis=1)


def interior_points(n: int, seed: int) -> np.ndarray:
    """(n, 3) sub-voxel (x, y, z) points at least 8 voxels inside SHAPE."""
    upper = np.array(SHAPE[::-1]) - 9.0
    return np.random.default_rng(seed).uniform(8.0, upper, size=(n, 3))


# ----------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def fixed():
    return smooth_volume(SHAPE, seed=0)


@pytest.fixture(scope="module", params=[(1.0, 1.0, 1.0), (1.0, 1.0, 2.0)], ids=["isotropic", "anisotropic"])
def translation(request, fixed):
    """(spacing, result): moving shows the fixed image shifted by +SHIFT, so a feature at p sits at p + SHIFT."""
    moving = ndi.shift(fixed, SHIFT_ZYX, order=3, mode="nearest")
    settings = A.SynSettings(type_of_transform="Translation", **FAST_LINEAR)
    return request.param, A.register_syn(fixed, moving, request.param, settings)


@pytest.fixture(scope="module")
def deformation(fixed):
    """(moving, true field, result): moving(p) = fixed(p + true(p)), registered by SyN."""
    true_field = smooth_field(SHAPE, amplitude=4.0, seed=1)
    moving = warp_np(fixed, true_field)
    result = A.register_syn(fixed, moving, (1.0, 1.0, 1.0), A.SynSettings(reg_iterations=(60, 40, 0)))
    return moving, true_field, result


# ---------------------------------------------------- 1, 5: a known shift
def test_shift_gives_a_displacement_of_plus_the_shift_in_x_y_z_order(translation):
    _, result = translation
    assert result.displacement.shape == (3, *SHAPE) and result.displacement.dtype == np.float32
    error = result.displacement[(slice(None), *INTERIOR)] - SHIFT_XYZ[:, None, None, None]
    assert np.abs(error).max() < 0.2


def test_moving_points_go_to_the_fixed_image_by_minus_the_shift(translation):
    spacing, result = translation
    moving_points = interior_points(12, seed=2)
    fixed_points = result.moving_points_to_fixed(moving_points)
    np.testing.assert_allclose(fixed_points, moving_points - SHIFT_XYZ, atol=0.2)
    np.testing.assert_array_equal(A.moving_points_to_fixed(result.transforms, moving_points, spacing), fixed_points)


def test_transforms_are_in_mm_so_spacing_reaches_ants(translation):
    import ants

    spacing, result = translation
    with A.transform_files(result.transforms) as (forward, _):
        (matrix_file,) = forward
        offset_mm = ants.read_transform(matrix_file).parameters[-3:]
    np.testing.assert_allclose(offset_mm, SHIFT_XYZ * np.array(spacing), atol=0.2 * max(spacing))


def test_points_refuse_another_spacing(translation):
    spacing, result = translation
    with pytest.raises(ValueError, match="spacing"):
        A.moving_points_to_fixed(result, interior_points(2, seed=3), (spacing[0], spacing[1], spacing[2] * 2))
    assert A.moving_points_to_fixed(result, np.zeros((0, 3))).shape == (0, 3)


# ------------------------------------------------ 2, 3: SyN on a deformation
def test_our_warp_with_the_displacement_reproduces_ants_warped_image(deformation):
    moving, _, result = deformation
    ours = warp(torch.from_numpy(moving)[None, None], torch.from_numpy(result.displacement)[None])[0, 0].numpy()
    assert result.warped.shape == SHAPE and result.warped.dtype == np.float32
    np.testing.assert_allclose(ours[INTERIOR], result.warped[INTERIOR], atol=1e-3)


def test_syn_brings_moving_landmarks_close_to_their_true_fixed_positions(deformation):
    _, true_field, result = deformation
    moving_points = interior_points(40, seed=4)
    truth = moving_points + field_at(true_field, moving_points)  # moving(q) shows fixed(q + true(q))
    found = result.moving_points_to_fixed(moving_points)
    before = np.linalg.norm(truth - moving_points, axis=1).mean()
    after = np.linalg.norm(truth - found, axis=1).mean()
    assert before > 1.0 and after < 0.5 * before


def test_points_invert_the_image_mapping(deformation):
    """A moving point q lands on the fixed point p with p + displacement(p) = q."""
    _, _, result = deformation
    moving_points = interior_points(20, seed=5)
    fixed_points = result.moving_points_to_fixed(moving_points)
    np.testing.assert_allclose(fixed_points + field_at(result.displacement, fixed_points), moving_points, atol=0.02)


# ------------------------------------------------------------ 4: determinism
@pytest.mark.parametrize("threads, transform", [(1, "SyN"), (2, "SyNOnly")])
def test_fixed_seed_and_threads_give_identical_results(threads, transform):
    fixed = smooth_volume((24, 26, 28), seed=6)
    moving = warp_np(fixed, smooth_field(fixed.shape, amplitude=1.5, seed=7))
    settings = A.SynSettings(type_of_transform=transform, reg_iterations=(10, 5), random_seed=3, threads=threads)
    first, second = (A.register_syn(fixed, moving, (1.0, 1.0, 1.5), settings) for _ in range(2))
    np.testing.assert_array_equal(first.displacement, second.displacement)
    np.testing.assert_array_equal(first.warped, second.warped)


# --------------------------------------------------- 6: files and bad input
def test_nothing_is_left_in_the_temporary_folder_even_on_error(fixed, tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    moving = ndi.shift(fixed, SHIFT_ZYX, order=1, mode="nearest")
    result = A.register_syn(fixed, moving, (1.0, 1.0, 1.0), A.SynSettings(type_of_transform="Translation",
                                                                          **FAST_LINEAR))
    result.moving_points_to_fixed(interior_points(3, seed=8))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="does not exist"):
        A.register_syn(fixed, moving, (1.0, 1.0, 1.0), A.SynSettings(type_of_transform="NoSuchTransform"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fixed_shape, moving_shape, spacing, match", [
    ((32, 36), (32, 36), (1, 1, 1), "3-D"),
    ((8, 8, 8, 2), (8, 8, 8, 2), (1, 1, 1), "3-D"),
    ((16, 16, 16), (16, 16, 18), (1, 1, 1), "one grid"),
    ((16, 16, 16), (16, 16, 16), (1, 1), "spacing"),
    ((16, 16, 16), (16, 16, 16), (1, -1, 1), "spacing"),
])
def test_bad_volumes_and_spacing_are_refused(fixed_shape, moving_shape, spacing, match):
    with pytest.raises(ValueError, match=match):
        A.register_syn(np.ones(fixed_shape), np.ones(moving_shape), spacing)


@pytest.mark.parametrize("change, match", [
    (dict(threads=0), "threads"),
    (dict(random_seed=0), "random_seed"),
    (dict(reg_iterations=()), "reg_iterations"),
    (dict(aff_iterations=(10, 10)), "one entry per level"),
])
def test_bad_settings_are_refused(change, match):
    volume = np.ones((16, 16, 16))
    with pytest.raises(ValueError, match=match):
        A.register_syn(volume, volume, (1, 1, 1), A.SynSettings(**change))


def test_points_must_be_n_by_3(translation):
    _, result = translation
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        result.moving_points_to_fixed(np.zeros((4, 2)))
