"""The elastix affine baseline: shipped parameters, coordinate conversion, known-transform recovery.

A breast-like MLO (an ellipse of smooth texture with a bright square) is
turned into a CC by ``affine_warp`` with a known pixel affine, so the matrix
elastix must return is known exactly. The conversion from elastix's
parameters is checked against elastix's own resampler (transformix); the
prior against ``medrepro.spatial.warp.rotation_matrix``. itk loads once per module
(about 15 s); images are 96 x 64.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from medrepro.spatial import boxes, warp
from medrepro.spatial import elastix as E
from medrepro.errors import DataError
from medrepro.studies.mammo_registration import elastix_affine as EA
from medrepro.studies.mammo_registration import networks

pytestmark = pytest.mark.filterwarnings("ignore:builtin type .* has no __module__:DeprecationWarning")

HEIGHT, WIDTH = 96, 64
SQUARE = (26, 40, 38, 52)  # x1, y1, x2, y2 of the bright square on the MLO


# ------------------------------------------------------------------ helpers
def mlo_like(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A breast-like view: textured ellipse (the region) holding a bright square; air elsewhere."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH] + 0.5
    region = ((x - WIDTH / 2) / 22) ** 2 + ((y - HEIGHT / 2) / 30) ** 2 <= 1
    texture = ndi.gaussian_filter(rng.standard_normal((HEIGHT, WIDTH)), 3.0)
    image = np.where(region, 0.45 + 0.25 * texture / np.abs(texture).max(), 0.0)
    x1, y1, x2, y2 = SQUARE
    image[y1:y2, x1:x2] = 0.95
    return np.clip(ndi.gaussian_filter(image, 0.7), 0, 1).astype(np.float32), region


def warp_np(image: np.ndarray, matrix: np.ndarray, shape) -> np.ndarray:
    tensor = torch.from_numpy(np.asarray(image, dtype=np.float32))[None, None]
    return warp.affine_warp(tensor, torch.from_numpy(np.asarray(matrix)), shape)[0, 0].numpy()


def cc_seen_through(truth: np.ndarray, mlo: np.ndarray, region: np.ndarray, cc_shape) -> tuple[np.ndarray, ...]:
    """The CC whose registration onto ``mlo`` is ``truth``: affine_warp(cc, truth, mlo grid) = mlo."""
    inverse = warp.invert_affine(torch.from_numpy(truth)).numpy()
    return warp_np(mlo, inverse, cc_shape), warp_np(region, inverse, cc_shape) >= 0.5


def pixel_affine(angle_deg: float, scale: float, dx: float, dy: float) -> np.ndarray:
    """Turn and scale about the MLO grid's centre, then shift (pixel affine, float64)."""
    turn = warp.rotation_matrix(angle_deg, warp.image_centre((HEIGHT, WIDTH)), scale=scale, dtype=torch.float64)
    return warp.compose_affine(warp.translation_matrix(dx, dy, dtype=torch.float64), turn).numpy()


def corner_error(found: np.ndarray, expected: np.ndarray, shape=(HEIGHT, WIDTH)) -> float:
    """Largest distance (px) between where the two affines send the MLO grid's corners."""
    height, width = shape
    corners = np.array([[0, 0, 1], [width, 0, 1], [0, height, 1], [width, height, 1]], dtype=np.float64)
    return float(np.linalg.norm(corners @ found.T - corners @ expected.T, axis=1).max())


def stack(*arrays):
    return [np.asarray(a)[None] for a in arrays]


# ----------------------------------------------------------------- fixtures
TRUTH = pixel_affine(15.0, 1.05, 3.0, -2.0)


@pytest.fixture(scope="module")
def scene():
    mlo, region = mlo_like()
    cc, cc_region = cc_seen_through(TRUTH, mlo, region, (HEIGHT, WIDTH))
    return {"mlo": mlo, "mlo_region": region, "cc": cc, "cc_region": cc_region}


@pytest.fixture(scope="module")
def recovered(scene):
    matrices, seconds = EA.register_pairs(*stack(scene["cc"], scene["mlo"], scene["cc_region"], scene["mlo_region"]),
                                          prior=False, seed=3, progress=False)
    return matrices, seconds


# ----------------------------------------------------------- parameter file
def test_parameter_file_holds_an_affine_mutual_information_setup():
    pmap = EA.default_parameter_map()
    expected = {
        "Transform": ["AffineTransform"], "Metric": ["AdvancedMattesMutualInformation"],
        "Optimizer": ["AdaptiveStochasticGradientDescent"], "NumberOfResolutions": ["3"],
        "ImagePyramidSchedule": ["4", "4", "2", "2", "1", "1"], "ErodeMask": ["false"],
        "AutomaticTransformInitialization": ["false"],
    }
    assert {key: pmap.get(key) for key in expected} == expected
    assert pmap["ImageSampler"][0].startswith("Random")
    assert int(pmap["MaximumNumberOfIterations"][0]) <= 500  # the baseline must stay quick


def test_parser_agrees_with_elastix_reader():
    import itk

    reader = itk.ParameterObject.New()
    reader.ReadParameterFile(str(EA.PARAMETER_FILE))
    assert EA.default_parameter_map() == {key: list(v) for key, v in dict(reader.GetParameterMap(0)).items()}


# ----------------------------------------------------------- conventions
def test_start_affine_is_the_network_prior():
    cc_shape, mlo_shape = (88, 60), (HEIGHT, WIDTH)
    scale = (max(cc_shape) / 2) / (max(mlo_shape) / 2)
    expected = warp.rotation_matrix(45.0, warp.image_centre(mlo_shape), scale=scale,
                                    in_centre=warp.image_centre(cc_shape), dtype=torch.float64).numpy()
    np.testing.assert_allclose(EA.start_affine(cc_shape, mlo_shape), expected, atol=1e-5)
    np.testing.assert_array_equal(EA.start_affine(cc_shape, mlo_shape, prior=False), [[1, 0, 0], [0, 1, 0]])


def test_elastix_parameters_convert_to_the_affine_transformix_resamples_with(scene):
    """Set arbitrary affine parameters, resample with transformix, and compare with affine_warp."""
    fixed = scene["mlo"][:70, :50]
    template = E.register(fixed, scene["cc"], E.with_overrides(EA.default_parameter_map(), iterations=2,
                                                               threads=1)).transform[0]
    pmap = {**template, "TransformParameters": ["0.95", "0.2", "-0.15", "1.05", "3.3", "-2.1"]}
    matrix = EA.pixel_affine_from_elastix(pmap)
    theirs = E.transform_image(scene["cc"], (pmap,), order=1)
    ours = warp_np(scene["cc"], matrix, fixed.shape)
    inside = warp.warped_support(scene["cc"].shape, torch.from_numpy(matrix), fixed.shape, margin=1.0)[0, 0].numpy()
    assert inside.mean() > 0.8
    np.testing.assert_allclose(ours[inside], theirs[inside], atol=1e-4)
    with pytest.raises(ValueError, match="AffineTransform"):
        EA.pixel_affine_from_elastix({"Transform": ["SimilarityTransform"]})


# ------------------------------------------------------------ registration
def test_recovers_a_known_affine(recovered, scene):
    matrices, seconds = recovered
    assert matrices.shape == (1, 2, 3) and matrices.dtype == np.float64
    assert len(seconds) == 1 and seconds[0] > 0
    assert corner_error(matrices[0], TRUTH) < 1.5
    assert corner_error(np.array([[1.0, 0, 0], [0, 1, 0]]), TRUTH) > 10  # the task was not trivial

    registered = warp_np(scene["cc"], matrices[0], (HEIGHT, WIDTH))
    tissue = scene["mlo_region"]
    assert np.corrcoef(registered[tissue], scene["mlo"][tissue])[0, 1] > 0.95


def test_bright_square_box_lands_on_the_mlo_square(recovered, scene):
    matrices, _ = recovered
    mlo_box = np.array(SQUARE, dtype=np.float64)
    cc_box = boxes.transform_boxes(TRUTH, mlo_box)  # the square's enclosing box on the CC grid
    carried = networks.carry_cc_boxes(torch.from_numpy(matrices), torch.from_numpy(cc_box)[None]).numpy()[0]
    carried_by_truth = networks.carry_cc_boxes(torch.from_numpy(TRUTH)[None], torch.from_numpy(cc_box)[None])
    np.testing.assert_allclose(carried, carried_by_truth.numpy()[0], atol=2.0)
    assert boxes.centre_distance(carried, mlo_box) < 2.0  # rectification widens the box, not its centre


def test_prior_start_converges_to_the_truth():
    """CC and MLO grids differ; the truth is the prior plus a small turn, so elastix starts near it."""
    cc_shape = (88, 60)
    start = EA.start_affine(cc_shape, (HEIGHT, WIDTH))
    truth = EA._compose(start, pixel_affine(-6.0, 0.97, 2.0, 1.0))
    mlo, region = mlo_like(seed=1)
    cc, cc_region = cc_seen_through(truth, mlo, region, cc_shape)
    matrices, _ = EA.register_pairs(*stack(cc, mlo, cc_region, region), prior=True, progress=False)
    assert corner_error(start, truth) > 5
    assert corner_error(matrices[0], truth) < 1.5


def test_same_seed_gives_identical_matrices(recovered, scene):
    args = stack(scene["cc"], scene["mlo"], scene["cc_region"], scene["mlo_region"])
    again, _ = EA.register_pairs(*args, prior=False, seed=3, progress=False)
    np.testing.assert_array_equal(again, recovered[0])
    other, _ = EA.register_pairs(*args, prior=False, seed=4, progress=False)
    assert not np.array_equal(other, recovered[0])  # the seed reaches elastix's sampler


# ------------------------------------------------------------------ failures
def test_failing_pairs_keep_the_start_affine(scene, caplog):
    cc = np.stack([scene["cc"]] * 2)
    mlo = np.stack([scene["mlo"]] * 2)
    cc_region = np.stack([scene["cc_region"], np.zeros_like(scene["cc_region"])])
    mlo_region = np.stack([scene["mlo_region"]] * 2)
    broken = E.with_overrides(EA.default_parameter_map(), Metric="NoSuchMetric")
    start = EA.start_affine((HEIGHT, WIDTH), (HEIGHT, WIDTH))
    with caplog.at_level(logging.WARNING, logger=EA.__name__):
        matrices, seconds = EA.register_pairs(cc, mlo, cc_region, mlo_region, parameter_map=broken, progress=False)
    np.testing.assert_allclose(matrices, np.stack([start, start]))
    assert len(seconds) == 2
    assert "pair 0: elastix failed" in caplog.text
    assert "pair 1: a breast region is empty" in caplog.text
    assert "2 of 2 pairs fell back" in caplog.text


def test_bad_stacks_are_rejected(scene):
    cc, mlo, cc_region, mlo_region = stack(scene["cc"], scene["mlo"], scene["cc_region"], scene["mlo_region"])
    with pytest.raises(DataError, match="numbers of pairs"):
        EA.register_pairs(np.concatenate([cc, cc]), mlo, np.concatenate([cc_region] * 2), mlo_region)
    with pytest.raises(DataError, match="mlo_region"):
        EA.register_pairs(cc, mlo, cc_region, mlo_region[:, :-1])
    with pytest.raises(DataError, match=r"\(N, H, W\)"):
        EA.register_pairs(cc[0], mlo[0], cc_region[0], mlo_region[0])
    with pytest.raises(DataError, match="NaN"):
        EA.register_pairs(np.full_like(cc, np.nan), mlo, cc_region, mlo_region)
