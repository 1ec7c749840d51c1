"""elastix parameter maps and registration calls, checked against scipy.ndimage.

Known transforms are built with scipy.ndimage (an independent resampler) and
must be recovered by elastix; the elastix parameter parser is checked against
elastix's own reader. Images are small and iterations reduced so that the
module stays fast; itk loads once per module (first registration).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from medrepro.errors import ConfigError, DataError
from medrepro.spatial import elastix as E
from conftest import REPO
from support.elastix_maps import bspline, similarity
from support.phantoms import make_phantom

pytestmark = pytest.mark.filterwarnings("ignore:builtin type .* has no __module__:DeprecationWarning")

SIZE = 112
CENTER = ((SIZE - 1) / 2, (SIZE - 1) / 2)  # elastix's geometric centre of a SIZE x SIZE image
TRUE_ANGLE, TRUE_SCALE, TRUE_SHIFT = 5.0, 1.07, (6.0, -4.0)


# ------------------------------------------------------------------ helpers
def similarity_rc(angle_deg: float, scale: float, translation, center):
    """(matrix, offset) in (row, col) of T(p) = s R (p - c) + c + t, R turning +col towards +row."""
    a = np.deg2rad(angle_deg)
    matrix = scale * np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    center, translation = np.asarray(center, float), np.asarray(translation, float)
    return matrix, center + translation - matrix @ center


def warp_with_scipy(array: np.ndarray, matrix: np.ndarray, offset: np.ndarray, order: int) -> np.ndarray:
    """out(p) = array(matrix @ p + offset), zero outside (the convention of elastix transforms)."""
    return ndi.affine_transform(array, matrix, offset=offset, order=order, mode="constant", cval=0.0)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def fast_similarity_map(iterations: int = 250, seed: int = 0) -> dict:
    return E.with_overrides(similarity(), iterations=iterations, seed=seed, threads=1)


# ----------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def phantom():
    return make_phantom()


@pytest.fixture(scope="module")
def moved(phantom):
    """The phantom seen through the known similarity transform T: moving(p) = phantom(T^-1 p)."""
    image, labels = phantom
    matrix, offset = similarity_rc(TRUE_ANGLE, TRUE_SCALE, TRUE_SHIFT, CENTER)
    inverse = np.linalg.inv(matrix)
    moving = warp_with_scipy(image, inverse, -inverse @ offset, order=3).astype(np.float32)
    moving_labels = warp_with_scipy(labels, inverse, -inverse @ offset, order=0)
    return moving, moving_labels


@pytest.fixture(scope="module")
def recovered(phantom, moved):
    return E.register(phantom[0], moved[0], fast_similarity_map())


@pytest.fixture(scope="module")
def identity_runs(phantom):
    image = phantom[0]
    return [E.register(image, image, fast_similarity_map(iterations=150, seed=7)) for _ in range(2)]


# ----------------------------------------------------------- parameter maps
def test_parser_agrees_with_elastix_reader(tmp_path):
    import itk

    path = tmp_path / "map.txt"
    E.write_parameter_file(bspline(), path)
    path.write_text("// a comment line\n" + path.read_text().replace("\n", " // trailing\n", 1))
    reader = itk.ParameterObject.New()
    reader.ReadParameterFile(str(path))
    expected = {key: list(values) for key, values in dict(reader.GetParameterMap(0)).items()}
    assert E.load_parameter_map(path) == expected == bspline()


def test_overrides_set_elastix_keys_without_touching_the_input():
    base = bspline()
    snapshot = {key: list(values) for key, values in base.items()}
    pmap = E.with_overrides(base, iterations=50, grid_spacing=4, spatial_samples=512, seed=42, threads=2,
                            MaximumStepLength=1.5, resolutions=None)
    assert base == snapshot
    assert pmap["MaximumNumberOfIterations"] == ["50"]
    assert pmap["FinalGridSpacingInVoxels"] == ["4", "4"]
    assert pmap["NumberOfSpatialSamples"] == ["512"]
    assert pmap["RandomSeed"] == ["42"]
    assert pmap[E.THREADS_KEY] == ["2"]
    assert pmap["MaximumStepLength"] == ["1.5"]
    assert pmap["NumberOfResolutions"] == base["NumberOfResolutions"]
    assert E.with_overrides(base, samples=300)["NumberOfSpatialSamples"] == ["300"]


def test_resolution_override_keeps_the_finest_pyramid_levels():
    base = bspline()  # 8 4 2
    fewer = E.with_overrides(base, resolutions=2)
    more = E.with_overrides(base, resolutions=4)
    assert fewer["NumberOfResolutions"] == ["2"] and fewer["ImagePyramidSchedule"] == ["4", "4", "2", "2"]
    assert more["ImagePyramidSchedule"] == ["16", "16", "8", "8", "4", "4", "2", "2"]
    assert "ImagePyramidSchedule" not in E.with_overrides(similarity(), resolutions=2)


@pytest.mark.parametrize("bad", [
    {"iterations": 0}, {"iterations": 2.5}, {"resolutions": True}, {"grid_spacing": -1},
    {"grid_spacing": float("nan")}, {"seed": -1}, {"seed": 2**32}, {"threads": 0},
    {"samples": 10, "spatial_samples": 20}, {"unknown_option": 3},
])
def test_bad_overrides_raise_config_error(bad):
    with pytest.raises(ConfigError):
        E.with_overrides(similarity(), **bad)


def test_parameter_file_round_trip(tmp_path):
    pmap = E.with_overrides(bspline(), seed=3)
    E.write_parameter_file(pmap, tmp_path / "p.txt")
    assert E.load_parameter_map(tmp_path / "p.txt") == pmap


def test_parameter_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text('(Transform "SimilarityTransform")\nMetric AdvancedNormalizedCorrelation\n')
    with pytest.raises(DataError, match="bad.txt.*line 2"):
        E.load_parameter_map(bad)
    twice = tmp_path / "twice.txt"
    twice.write_text("(NumberOfResolutions 3)\n(NumberOfResolutions 4) // again\n")
    with pytest.raises(DataError, match="given twice"):
        E.load_parameter_map(twice)
    with pytest.raises(DataError, match="missing"):
        E.load_parameter_map(tmp_path / "absent.txt")
    with pytest.raises(ConfigError):
        E.load_parameter_map("affine")


def test_comment_markers_inside_quotes_are_kept():
    pmap = E.parse_parameter_text('(ResultImageFormat "a//b") // trailing\n// (Ignored 1)\n')
    assert pmap == {"ResultImageFormat": ["a//b"]}


# ------------------------------------------------------------- registration
def test_similarity_recovers_known_transform(phantom, moved, recovered):
    found = E.similarity_parameters(recovered.transform)
    assert found["angle_deg"] == pytest.approx(TRUE_ANGLE, abs=0.3)
    assert found["scale"] == pytest.approx(TRUE_SCALE, abs=0.005)
    assert found["center"] == pytest.approx(CENTER)
    np.testing.assert_allclose(found["translation"], TRUE_SHIFT, atol=0.3)
    matrix, offset = similarity_rc(TRUE_ANGLE, TRUE_SCALE, TRUE_SHIFT, CENTER)
    np.testing.assert_allclose(found["matrix"], matrix, atol=0.006)
    np.testing.assert_allclose(found["offset"], offset, atol=0.6)

    assert recovered.warped.shape == phantom[0].shape and recovered.warped.dtype == np.float32
    assert np.corrcoef(recovered.warped.ravel(), phantom[0].ravel())[0, 1] > 0.99
    assert recovered.seconds > 0
    carried = E.transform_labels(moved[1], recovered.transform)
    for label in (1, 2, 3):
        assert dice(carried == label, phantom[1] == label) > 0.95


def test_identity_registration_gives_identity_parameters(identity_runs):
    found = E.similarity_parameters(identity_runs[0].transform)
    assert found["scale"] == pytest.approx(1.0, abs=2e-3)
    assert found["angle_deg"] == pytest.approx(0.0, abs=0.1)
    np.testing.assert_allclose(found["translation"], (0.0, 0.0), atol=0.1)


def test_same_seed_gives_identical_results(identity_runs):
    first, second = identity_runs
    assert first.transform[0]["TransformParameters"] == second.transform[0]["TransformParameters"]
    np.testing.assert_array_equal(first.warped, second.warped)


def test_warping_matches_scipy_for_the_reported_matrix(phantom, moved, recovered):
    """similarity_parameters' (matrix, offset) is the map elastix actually resamples with."""
    found = E.similarity_parameters(recovered.transform)
    grid = np.indices((SIZE, SIZE)).reshape(2, -1).astype(float)
    source = found["matrix"] @ grid + found["offset"][:, None]
    # compare where both resamplers read inside the image (their border rules differ)
    inner = np.all((source >= 1) & (source <= SIZE - 2), axis=0).reshape(SIZE, SIZE)
    assert inner.mean() > 0.8
    for order in (0, 1):
        ours = E.transform_image(moved[0], recovered.transform, order=order)
        theirs = warp_with_scipy(moved[0], found["matrix"], found["offset"], order=order)
        if order == 1:
            np.testing.assert_allclose(ours[inner], theirs[inner], atol=1e-4)
        else:  # nearest neighbour may round exact half-way positions differently
            assert np.mean(ours[inner] == theirs[inner]) > 0.99
    labels_ours = E.transform_labels(moved[1], recovered.transform)
    labels_theirs = warp_with_scipy(moved[1], found["matrix"], found["offset"], order=0)
    assert np.mean(labels_ours == labels_theirs) > 0.99


def _shift_transform(template, d_row: int, d_col: int):
    """A similarity transform with unit scale, no rotation and an integer shift."""
    pmap = dict(template[0])
    pmap["TransformParameters"] = ["1", "0", str(d_col), str(d_row)]  # scale, angle, tx (col), ty (row)
    return (pmap,)


def test_integer_shift_resamples_exactly(identity_runs, phantom):
    image, labels = phantom
    shift = _shift_transform(identity_runs[0].transform, -2, 3)  # out[r, c] = in[r - 2, c + 3]
    expected = np.zeros_like(labels)
    expected[2:, :-3] = labels[:-2, 3:]
    np.testing.assert_array_equal(E.transform_labels(labels, shift), expected)
    cubic = E.transform_image(image, shift, order=3)
    np.testing.assert_allclose(cubic[2:, :-3], image[:-2, 3:], atol=1e-5)
    np.testing.assert_array_equal(cubic[:2], 0.0)


def test_labels_stay_in_their_set(recovered):
    rng = np.random.default_rng(1)
    coarse = rng.choice(np.array([0, 3, 7], dtype=np.uint8), size=(14, 14))
    labels = np.kron(coarse, np.ones((8, 8), dtype=np.uint8))
    warped = E.transform_labels(labels, recovered.transform)
    assert warped.dtype == np.uint8 and warped.shape == labels.shape
    assert set(np.unique(warped).tolist()) <= {0, 3, 7}
    no_background = np.where(labels == 0, 9, labels).astype(np.uint8)
    # only the background fill can appear besides the input's own labels
    assert set(np.unique(E.transform_labels(no_background, recovered.transform)).tolist()) <= {0, 3, 7, 9}


def test_spacing_makes_translation_physical(phantom):
    """With 0.5 mm pixels a 2-pixel shift is reported as 1 mm; array results do not change."""
    image = phantom[0]
    moving = ndi.shift(image, (2.0, 0.0), order=3).astype(np.float32)  # moving(p) = image(p - (2, 0))
    spacing = (0.5, 0.5)
    result = E.register(image, moving, fast_similarity_map(iterations=200), fixed_spacing=spacing,
                        moving_spacing=spacing)
    found = E.similarity_parameters(result.transform)
    np.testing.assert_allclose(found["translation"], (1.0, 0.0), atol=0.1)
    assert found["center"] == pytest.approx((CENTER[0] * 0.5, CENTER[1] * 0.5))


def test_logs_go_to_log_dir_not_console(phantom, tmp_path, capfd):
    image = phantom[0]
    E.register(image, image, fast_similarity_map(iterations=20), log_dir=tmp_path / "logs")
    E.register(image, image, fast_similarity_map(iterations=20))
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
    log_text = (tmp_path / "logs" / "elastix.log").read_text()
    assert "SimilarityTransform" in log_text
    assert not list((tmp_path / "logs").glob("result.*"))


def test_bad_inputs_are_rejected(phantom):
    image = phantom[0]
    with pytest.raises(ValueError, match="2-D"):
        E.register(image[None], image, fast_similarity_map())
    with pytest.raises(ValueError, match="NaN"):
        E.register(np.full_like(image, np.nan), image, fast_similarity_map())
    with pytest.raises(ValueError, match="spacing"):
        E.register(image, image, fast_similarity_map(), fixed_spacing=(0.0, 1.0))
    with pytest.raises(ValueError, match="SimilarityTransform"):
        E.similarity_parameters({"Transform": ["BSplineTransform"]})


# ------------------------------------------------------------------- masks
def _distracted_pair(image: np.ndarray):
    """``image`` and its copy shifted 3 rows down, each with one bright square placed 30 rows apart.

    The squares pull an unmasked registration away from the true shift; masks
    that leave them out (fixed mask on the fixed one, moving mask on the
    moving one) let only the shared content count.
    """
    moving = ndi.shift(image, (3.0, 0.0), order=3).astype(np.float32)
    fixed = image.copy()
    fixed[10:40, 75:105] = 1.0
    moving[40:70, 75:105] = 1.0
    fixed_mask = np.ones(fixed.shape, dtype=bool)
    fixed_mask[6:44, 71:109] = False
    moving_mask = np.ones(moving.shape, dtype=bool)
    moving_mask[36:74, 71:109] = False
    return fixed, moving, fixed_mask, moving_mask


def test_masks_keep_distractors_out_of_the_metric(phantom):
    fixed, moving, fixed_mask, moving_mask = _distracted_pair(phantom[0])
    masked = E.similarity_parameters(E.register(fixed, moving, fast_similarity_map(), fixed_mask=fixed_mask,
                                                moving_mask=moving_mask).transform)
    np.testing.assert_allclose(masked["translation"], (3.0, 0.0), atol=0.2)
    assert masked["angle_deg"] == pytest.approx(0.0, abs=0.2)
    assert masked["scale"] == pytest.approx(1.0, abs=0.005)
    unmasked = E.similarity_parameters(E.register(fixed, moving, fast_similarity_map()).transform)
    assert np.linalg.norm(np.subtract(unmasked["translation"], (3.0, 0.0))) > 2.0  # the distractor did pull


def test_bad_masks_are_rejected(phantom):
    image = phantom[0]
    mask = np.ones(image.shape, dtype=bool)
    with pytest.raises(ValueError, match=r"fixed_mask has shape \(112, 111\)"):
        E.register(image, image, fast_similarity_map(), fixed_mask=mask[:, :-1])
    with pytest.raises(ValueError, match="moving_mask is empty"):
        E.register(image, image, fast_similarity_map(), moving_mask=np.zeros_like(mask))
    with pytest.raises(ValueError, match="boolean"):
        E.register(image, image, fast_similarity_map(), fixed_mask=mask.astype(np.uint8) * 2)


# ------------------------------------------------------------ thread counts
_TWO_THREAD_REGISTRATION = """
import sys

import numpy as np

sys.path.insert(0, {tests!r})
from medrepro.spatial import elastix as E
from support.elastix_maps import bspline

# a multi-metric B-spline map (NCC + bending energy, random sampler): the kind that crashed
# itk-elastix 0.25 when its thread count was set on the registration method
pmap = E.with_overrides(bspline(), iterations=50, seed=1, threads={threads})
y, x = np.mgrid[:64, :64]
fixed = np.exp(-((x - 30) ** 2 + (y - 34) ** 2) / 200.0).astype(np.float32)
moving = np.exp(-((x - 34) ** 2 + (y - 30) ** 2) / 180.0).astype(np.float32)
result = E.register(fixed, moving, pmap)
print(float(np.abs(moving - fixed).mean()), float(np.abs(result.warped - fixed).mean()))
"""


def test_a_bspline_registration_runs_at_two_threads_without_crashing():
    """In a subprocess: a crash (segmentation fault) fails this test instead of killing the suite."""
    import subprocess
    import sys

    script = _TWO_THREAD_REGISTRATION.format(tests=str(REPO / "tests"), threads=2)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr[-2000:]}"
    before, after = map(float, run.stdout.split())
    assert after < 0.5 * before  # it registered


def test_thread_count_is_restored_after_a_registration(phantom):
    import itk

    image, _ = phantom
    before = itk.MultiThreaderBase.GetGlobalDefaultNumberOfThreads()
    E.register(image, image, E.with_overrides(similarity(), iterations=5, seed=0, threads=1))
    assert itk.MultiThreaderBase.GetGlobalDefaultNumberOfThreads() == before
