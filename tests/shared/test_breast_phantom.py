"""The synthetic breast: determinism, masks, the pectoral triangle, calcification sizes, the non-affine CC -> MLO
map."""

import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from medrepro.errors import ConfigError
from medrepro.shared import breast_phantom as bp
from medrepro.shared.breast_phantom import (FilmEffects, make_breast, map_points, project_cc, project_mlo,
                                            render_spheres, single_calcification)

SHAPE = (300, 180)


def views(seed: int, shape=SHAPE, **params):
    rng = np.random.default_rng(seed)
    breast = make_breast(rng, **params)
    return breast, project_cc(breast, rng, shape), project_mlo(breast, rng, shape)


# --- determinism ----------------------------------------------------------------------------------------------------

def test_same_seed_gives_identical_arrays_and_another_seed_does_not():
    _, cc1, mlo1 = views(5)
    _, cc2, mlo2 = views(5)
    for a, b in ((cc1, cc2), (mlo1, mlo2)):
        assert a.image.tobytes() == b.image.tobytes()
        assert a.breast_mask.tobytes() == b.breast_mask.tobytes()
        assert a.muscle_mask.tobytes() == b.muscle_mask.tobytes()
        assert a.lesion_masks.keys() == b.lesion_masks.keys()
        assert all(a.lesion_masks[k].tobytes() == b.lesion_masks[k].tobytes() for k in a.lesion_masks)
        assert a.params == b.params
    _, cc3, mlo3 = views(6)
    assert cc3.image.shape == cc1.image.shape and not np.array_equal(cc3.image, cc1.image)
    assert mlo3.params["angle_deg"] != mlo1.params["angle_deg"]


def test_explicit_parameters_keep_the_anatomy_of_the_seed():
    """All draws happen whatever is set, so fixing one parameter changes nothing else."""
    a = make_breast(np.random.default_rng(3))
    b = make_breast(np.random.default_rng(3), spread=0.0, bulge=0.0)
    assert np.array_equal(a.gland_excess, b.gland_excess)
    assert a.depth_mm == b.depth_mm and a.lesions[0].centre_mm.tolist() == b.lesions[0].centre_mm.tolist()


# --- images and masks -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_images_are_film_densities_and_lesions_lie_inside_the_breast(seed):
    breast, cc, mlo = views(seed, n_masses=2, n_clusters=2, n_single=2, n_vascular=1)
    assert {lesion.kind for lesion in breast.lesions} == {"mass", "calcification"}
    for view in (cc, mlo):
        assert view.image.dtype == np.float32 and view.image.shape == SHAPE
        assert 0.0 <= view.image.min() and view.image.max() <= 1.0
        assert set(view.lesion_masks) == {lesion.id for lesion in breast.lesions}
        for lesion_id, mask in view.lesion_masks.items():
            assert mask.dtype == bool and mask.any(), f"lesion {lesion_id} has an empty {view.params['view']} mask"
            assert not (mask & ~view.breast_mask).any(), f"lesion {lesion_id} leaves the breast"
            row, col = (int(round(c)) for c in view.lesion_centres_px[lesion_id])
            assert view.breast_mask[row, col]
        for lesion_id, mask in view.calcification_masks.items():
            assert not (mask & ~view.lesion_masks[lesion_id]).any()


def test_air_is_dark_and_the_breast_bright_in_the_clean_projection():
    rng = np.random.default_rng(4)
    breast = make_breast(rng)
    cc = project_cc(breast, rng, SHAPE, film=None)
    outside = ~ndi.binary_dilation(cc.breast_mask, iterations=3)
    assert cc.image[outside].max() < 0.02
    inner = ndi.binary_erosion(cc.breast_mask, iterations=10)
    assert np.median(cc.image[inner]) > 0.3


def test_film_effects_stay_off_the_breast():
    rng = np.random.default_rng(8)
    breast = make_breast(rng)
    clean = project_mlo(breast, np.random.default_rng(1), SHAPE, film=None)
    filmed = project_mlo(breast, np.random.default_rng(1), SHAPE, film=FilmEffects(noise_sd=0.0))
    assert np.array_equal(clean.image, filmed.image) is False
    tissue = clean.breast_mask | clean.muscle_mask
    assert np.array_equal(clean.image[tissue], filmed.image[tissue])
    assert filmed.params["film"]["label"] is not None


def test_denser_breasts_hold_more_glandular_tissue():
    fractions = []
    for density in (0.0, 0.5, 1.0):
        breast = make_breast(np.random.default_rng(2), density=density)
        excess = breast.gland_excess
        fractions.append(float((excess > 0.5 * (bp.MU_GLAND - bp.MU_FAT)).mean()))
    assert fractions[0] < fractions[1] < fractions[2]


# --- the pectoral muscle and laterality -----------------------------------------------------------------------------

def test_mlo_pectoral_muscle_is_a_triangle_in_the_upper_chest_wall_corner():
    rng = np.random.default_rng(0)
    breast = make_breast(rng, laterality="R")
    mlo = project_mlo(breast, rng, SHAPE, film=None)
    muscle = mlo.muscle_mask
    rows, cols = SHAPE
    assert muscle[0, cols - 1] and not muscle[rows - 1, cols - 1] and not muscle[0, 0]
    widths = muscle.sum(axis=1)
    assert np.all(np.diff(widths) <= 0), "the muscle must narrow downwards"
    assert widths[0] > 0.15 * cols
    for row in np.nonzero(widths)[0]:  # each row's muscle is one run ending at the chest-wall edge
        assert muscle[row, cols - widths[row]:].all()
    assert not project_cc(breast, rng, SHAPE, film=None).muscle_mask.any()


def test_left_breasts_are_mirrored():
    right = make_breast(np.random.default_rng(9), laterality="R")
    left = make_breast(np.random.default_rng(9), laterality="L")
    for project in (project_cc, project_mlo):
        r = project(right, np.random.default_rng(0), SHAPE, film=None)
        lv = project(left, np.random.default_rng(0), SHAPE, film=None)
        assert np.array_equal(lv.image, r.image[:, ::-1])
        assert np.array_equal(lv.muscle_mask, r.muscle_mask[:, ::-1])
        for k in r.lesion_masks:
            assert np.array_equal(lv.lesion_masks[k], r.lesion_masks[k][:, ::-1])
            assert lv.lesion_centres_px[k] == pytest.approx((r.lesion_centres_px[k][0],
                                                             SHAPE[1] - 1 - r.lesion_centres_px[k][1]))
    mlo = project_mlo(left, np.random.default_rng(0), SHAPE, film=None)
    assert mlo.muscle_mask[0, 0] and not mlo.muscle_mask[0, -1]


# --- calcifications at sub-pixel precision --------------------------------------------------------------------------

def test_render_spheres_matches_the_sphere_volume_and_disc_area():
    rng = np.random.default_rng(0)
    for radius in (0.3, 0.5, 1.0, 2.5, 6.0):
        centre = rng.uniform(20, 21, 2)
        chords, coverage = render_spheres((48, 48), centre[None], np.array([radius]))
        assert chords.sum() == pytest.approx(4 / 3 * math.pi * radius ** 3, rel=0.03)
        rows, cols, cover = coverage[0]
        assert cover.sum() == pytest.approx(math.pi * radius ** 2, rel=0.05)
        # an independent brute-force rendering: 64 x 64 samples per pixel
        fine, _ = render_spheres((48, 48), centre[None], np.array([radius]), supersample=64)
        assert np.abs(chords - fine).max() < 0.1 * radius + 0.05


def calcification_breast(diameters, spacing_mm=12.0):
    lesions = [single_calcification(i + 1, (30.0 + spacing_mm * i, 3.0, -5.0 + 4 * i), d)
               for i, d in enumerate(diameters)]
    return make_breast(np.random.default_rng(11), depth_mm=70, radius_y_mm=50, radius_z_mm=50, lesions=lesions)


def test_calcification_sizes_in_the_projection_match_the_requested_diameters():
    diameters = [0.2, 0.4, 0.7, 1.0]
    breast = calcification_breast(diameters)
    empty = make_breast(np.random.default_rng(11), depth_mm=70, radius_y_mm=50, radius_z_mm=50, lesions=[])
    pixel = 0.1
    shape = (int(np.ceil(bp.breast_pixel_mm(breast, SHAPE) * SHAPE[0] / pixel)),
             int(np.ceil(bp.breast_pixel_mm(breast, SHAPE) * SHAPE[1] / pixel)))
    for project in (project_cc, project_mlo):
        view = project(breast, np.random.default_rng(0), shape, pixel_mm=pixel, film=None)
        background = project(empty, np.random.default_rng(0), shape, pixel_mm=pixel, film=None)
        contrast = view.image - background.image
        for lesion_id, diameter in enumerate(diameters, start=1):
            mask = view.calcification_masks[lesion_id]
            expected_area = math.pi * (diameter / 2 / pixel) ** 2
            perimeter = math.pi * diameter / pixel
            assert abs(mask.sum() - expected_area) <= 0.5 * perimeter + 1, (diameter, mask.sum(), expected_area)
            rows, cols = np.nonzero(mask)
            assert max(np.ptp(rows), np.ptp(cols)) + 1 == pytest.approx(diameter / pixel, abs=1.01)
            # soft partial-volume border: the ring around the mask holds values between background and the peak
            ring = ndi.binary_dilation(mask, iterations=1) & ~mask
            peak = contrast[mask].max()
            assert peak > 0
            assert 0.02 * peak < contrast[ring].max() < 0.9 * peak
        assert view.lesion_masks[1].sum() == view.calcification_masks[1].sum()


def test_a_0_2_mm_calcification_covers_about_two_pixels_at_0_1_mm():
    breast = calcification_breast([0.2])
    view = project_cc(breast, np.random.default_rng(0), (1400, 900), pixel_mm=0.1, film=None)
    mask = view.calcification_masks[1]
    rows, cols = np.nonzero(mask)
    assert 2 <= mask.sum() <= 5
    assert np.ptp(rows) + 1 in (1, 2, 3) and np.ptp(cols) + 1 in (1, 2, 3)


# --- compression geometry -------------------------------------------------------------------------------------------

def test_the_pixel_map_inverts_the_point_map():
    """Pulling pixels back through the closed-form inverse returns the points that the forward map pushed there."""
    breast = make_breast(np.random.default_rng(1))
    for angle in (0.0, 47.5):
        comp = bp._compression(breast, angle, breast.thickness_mm)
        rng = np.random.default_rng(2)
        points = np.array([bp._random_interior_point(rng, bp._dimensions(breast), 3.0, (-0.3, 0.95))
                           for _ in range(50)])
        mapped = bp._compress_points(breast, comp, points)
        x, v, w = bp._to_view(points, angle)
        centre, half = bp._column(breast, x, v, angle)
        tau = (w - centre) / half
        for i in range(len(points)):
            back = bp._uncompress(breast, comp, mapped[i, 0], mapped[i, 1], tau[i])
            assert np.allclose(back[:3], (x[i], v[i], w[i]), atol=0.01)  # table interpolation: < 0.01 mm
        assert np.all(np.abs(mapped[:, 2]) <= breast.thickness_mm / 2 + 1e-9)


def fit_affine_residual(source: np.ndarray, target: np.ndarray) -> float:
    """RMS residual (px) of the least-squares affine map source -> target."""
    design = np.column_stack([source, np.ones(len(source))])
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    return float(np.sqrt(np.mean(np.sum((design @ coef - target) ** 2, axis=1))))


def plane_lesions():
    """Eight calcifications in the breast's mid-plane y = 0, so the CC position alone fixes the 3-D position."""
    xs, zs = [15, 30, 45, 60, 20, 40, 55, 35], [-35, 25, -10, 15, 40, -30, 5, -40]
    return [single_calcification(i + 1, (x, 0.0, z), 0.5) for i, (x, z) in enumerate(zip(xs, zs))]


def cc_mlo_centres(breast, shape=bp.DEFAULT_SHAPE):
    cc = project_cc(breast, np.random.default_rng(0), shape, film=None)
    mlo = project_mlo(breast, np.random.default_rng(0), shape, angle_deg=47.0, film=None)
    ids = sorted(cc.lesion_centres_px)
    return (np.array([cc.lesion_centres_px[i] for i in ids]), np.array([mlo.lesion_centres_px[i] for i in ids]),
            cc, mlo)


def test_the_compression_alone_is_not_affine_but_the_linear_control_is():
    """Lesions in the mid-plane y = 0: no depth ambiguity, so only the compression can bend the CC -> MLO map."""
    common = dict(depth_mm=80, radius_y_mm=70, radius_z_mm=70, thickness_mm=45, lesions=plane_lesions())
    model = make_breast(np.random.default_rng(7), **common)
    control = make_breast(np.random.default_rng(7), spread=0.0, bulge=0.0, **common)
    cc, mlo, cc_view, _ = cc_mlo_centres(model)
    cc0, mlo0, *_ = cc_mlo_centres(control)
    assert fit_affine_residual(cc0, mlo0) < 1e-6            # linear compression: exactly affine
    assert fit_affine_residual(cc, mlo) > 1.0                # the compression model: pixels off at 600 px
    # the projected centres agree with map_points and sit in their masks
    mapped = map_points(model, np.array([lesion.centre_mm for lesion in model.lesions]), cc_view.params)
    assert np.allclose(mapped, cc)
    for lesion_id, (row, col) in cc_view.lesion_centres_px.items():
        assert cc_view.lesion_masks[lesion_id][int(round(row)), int(round(col))]


@pytest.mark.parametrize("seed", [12, 13, 14])
def test_lesions_of_one_breast_are_far_from_an_affine_cc_to_mlo_map(seed):
    """Random 3-D lesions: depth and compression together leave tens of pixels; the affine control leaves none."""
    breast = make_breast(np.random.default_rng(seed), n_masses=3, n_clusters=3, n_single=2, n_vascular=0)
    cc, mlo, *_ = cc_mlo_centres(breast)
    assert len(cc) >= 6 and fit_affine_residual(cc, mlo) > 5.0
    affine = np.array([[0.9, -0.2], [0.15, 1.1]])
    assert fit_affine_residual(cc, cc @ affine.T + [3.0, -7.0]) < 1e-9


# --- bad parameters -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("params, word", [
    ({"density": 1.5}, "density"), ({"laterality": "X"}, "laterality"), ({"voxel_mm": 0.0}, "voxel_mm"),
    ({"n_masses": -1}, "n_masses"), ({"thickness_mm": 5.0}, "thickness_mm"),
    ({"lesions": [single_calcification(1, (30, 0, 0), 0.3), single_calcification(1, (40, 0, 0), 0.3)]}, "ids"),
    ({"lesions": [single_calcification(3, (30, 0, 200), 0.3)], "depth_mm": 80}, "outside"),
])
def test_bad_parameters_are_config_errors_that_name_them(params, word):
    with pytest.raises(ConfigError, match=word):
        make_breast(np.random.default_rng(0), **params)


def test_bad_image_shape_is_a_config_error():
    breast = make_breast(np.random.default_rng(0))
    with pytest.raises(ConfigError, match="shape"):
        project_cc(breast, np.random.default_rng(0), (10, 600))
    with pytest.raises(ConfigError, match="diameter"):
        single_calcification(1, (0, 0, 0), 5.0)
