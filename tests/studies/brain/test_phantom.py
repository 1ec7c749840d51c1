"""The synthetic BraTS-Reg brain pairs: determinism, contrasts, lesions, landmarks and the true deformation."""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest
from scipy import ndimage as ndi

from medrepro.errors import ConfigError
from medrepro.studies.brain.phantom import LABELS, MODALITIES, BrainPair, PhantomSettings, make_pair

VOXEL = 4.0
SEEDS = range(5)
CSF, GM, WM = LABELS["csf"], LABELS["gm"], LABELS["wm"]
OEDEMA, ENHANCING, NECROSIS, CAVITY = LABELS["oedema"], LABELS["enhancing"], LABELS["necrosis"], LABELS["cavity"]


@functools.lru_cache(maxsize=None)
def case(seed: int, voxel: float = VOXEL, **settings) -> BrainPair:
    return make_pair(seed, PhantomSettings(voxel_mm=voxel, **settings))


def sample_field(field: np.ndarray, points_xyz: np.ndarray) -> np.ndarray:
    """The (3, z, y, x) field, channels (x, y, z), at (n, 3) voxel points (x, y, z), trilinearly."""
    coords = points_xyz[:, ::-1].T
    return np.stack([ndi.map_coordinates(field[c].astype(np.float64), coords, order=1) for c in range(3)], axis=1)


def pull_baseline_labels(pair: BrainPair) -> np.ndarray:
    """The baseline labels seen from each follow-up voxel through the true field (nearest neighbour)."""
    field = pair.followup_to_baseline
    grid = np.meshgrid(*[np.arange(n) for n in field.shape[1:]], indexing="ij")
    where = np.stack([grid[0] + field[2], grid[1] + field[1], grid[2] + field[0]])
    return ndi.map_coordinates(pair.baseline_labels, where, order=0, mode="constant")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


def tumour_centre_and_radius(pair: BrainPair, voxel: float = VOXEL) -> tuple[np.ndarray, float]:
    """Centroid (x, y, z voxels) and equivalent-sphere radius (mm) of the baseline's enhancing and necrotic tumour."""
    tumour = np.isin(pair.baseline_labels, (ENHANCING, NECROSIS))
    radius = (3 * tumour.sum() * voxel ** 3 / (4 * np.pi)) ** (1 / 3)
    return np.argwhere(tumour).mean(0)[::-1], radius


# --- settings, determinism, shapes ----------------------------------------------------------------------------------

def test_settings_give_the_brats_grid_and_reject_nonsense():
    assert PhantomSettings().shape == (155, 240, 240)
    assert PhantomSettings(voxel_mm=4.0).shape == (39, 60, 60)
    assert PhantomSettings(voxel_mm=3.0).shape == (52, 80, 80)
    for bad in ({"voxel_mm": 0.0}, {"landmarks_min": 10, "landmarks_max": 5}, {"landmarks_min": 0},
                {"tumour_radius_mm": (20.0, 10.0)}, {"relaxation": 1.5}, {"noise": -0.1},
                {"mass_effect_mm": float("nan")}):
        with pytest.raises(ConfigError):
            PhantomSettings(**bad)


def test_same_seed_gives_identical_arrays_and_another_seed_does_not():
    a, b, other = case(0), make_pair(np.random.default_rng(0), PhantomSettings(voxel_mm=VOXEL)), case(1)
    for m in MODALITIES:
        assert a.baseline[m].tobytes() == b.baseline[m].tobytes()
        assert a.followup[m].tobytes() == b.followup[m].tobytes()
        assert not np.array_equal(a.baseline[m], other.baseline[m])
    for name in ("baseline_landmarks", "followup_landmarks", "baseline_labels", "followup_labels",
                 "followup_to_baseline"):
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes()
    assert a.landmark_kinds == b.landmark_kinds
    assert not np.array_equal(a.followup_to_baseline, other.followup_to_baseline)


def test_shapes_dtypes_and_value_range():
    pair = case(0)
    shape = PhantomSettings(voxel_mm=VOXEL).shape
    assert set(pair.baseline) == set(pair.followup) == set(MODALITIES)
    for images, labels in ((pair.baseline, pair.baseline_labels), (pair.followup, pair.followup_labels)):
        assert labels.dtype == np.uint8 and labels.shape == shape
        for img in images.values():
            assert img.dtype == np.float32 and img.shape == shape
            assert img.min() >= 0 and 500 < img.max() < 4000          # an int16 scanner range
            assert np.all(img[labels == 0] == 0) and np.all(img[labels > 0] > 0)   # skull-stripped
    assert pair.followup_to_baseline.dtype == np.float32 and pair.followup_to_baseline.shape == (3, *shape)
    n = len(pair.landmark_kinds)
    assert pair.baseline_landmarks.shape == pair.followup_landmarks.shape == (n, 3)
    assert pair.baseline_landmarks.dtype == np.float64
    assert not np.allclose(pair.baseline_landmarks, np.round(pair.baseline_landmarks))   # sub-voxel


def test_full_size_case_has_the_brats_shape_and_is_quick():
    start = time.process_time()
    pair = make_pair(3)
    assert time.process_time() - start < 15.0
    assert pair.baseline["t1"].shape == pair.followup["flair"].shape == (155, 240, 240)
    assert pair.followup_to_baseline.shape == (3, 155, 240, 240)
    # Brain volume of an adult cerebrum, 1.1 to 1.7 litres.
    assert 1.1e6 < (pair.baseline_labels > 0).sum() < 1.7e6


# --- anatomy and contrast -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_contrasts_per_modality(seed):
    pair = case(seed)
    for images, labels in ((pair.baseline, pair.baseline_labels), (pair.followup, pair.followup_labels)):
        mean = {m: {k: float(img[labels == k].mean()) for k in np.unique(labels)} for m, img in images.items()}
        assert mean["t1"][WM] > mean["t1"][GM] > mean["t1"][CSF]
        assert mean["t1ce"][WM] > mean["t1ce"][GM] > mean["t1ce"][CSF]
        assert mean["t2"][CSF] > mean["t2"][GM] > mean["t2"][WM]
        assert mean["flair"][GM] > mean["flair"][WM] > mean["flair"][CSF]
        if OEDEMA in mean["flair"]:
            assert mean["flair"][OEDEMA] > 1.3 * mean["flair"][WM]
            assert mean["t2"][OEDEMA] > mean["t2"][GM]
    base = {m: {k: float(img[pair.baseline_labels == k].mean()) for k in (WM, ENHANCING, NECROSIS)}
            for m, img in pair.baseline.items()}
    assert base["t1ce"][ENHANCING] > 1.15 * base["t1ce"][WM]          # diluted by 4 mm voxels
    assert base["t1ce"][ENHANCING] > base["t1"][ENHANCING] * 1.5
    assert base["t2"][NECROSIS] > base["t2"][WM]


def test_brain_has_its_structures():
    labels = case(0, voxel=2.0).baseline_labels
    counts = np.bincount(labels.ravel(), minlength=9)
    brain = counts[1:].sum()
    assert 0.05 < counts[CSF] / brain < 0.25          # sulci, fissure, ventricles
    assert 0.2 < counts[GM] / brain < 0.55
    assert counts[WM] > counts[GM]
    assert counts[LABELS["vessel"]] > 30
    # Ventricles: CSF deep inside the brain, in both hemispheres.
    deep = ndi.distance_transform_edt(labels > 0) * 2.0 > 20
    csf_x = np.nonzero((labels == CSF) & deep)[2]
    mid = labels.shape[2] / 2
    assert (csf_x < mid - 3).sum() > 100 and (csf_x > mid + 3).sum() > 100


def test_anatomy_is_the_same_at_every_resolution():
    coarse, fine = case(2, voxel=4.0), case(2, voxel=3.0)
    volume4, volume3 = ((pair.baseline_labels > 0).sum() * v ** 3 for v, pair in ((4.0, coarse), (3.0, fine)))
    assert abs(volume4 - volume3) < 0.04 * volume3
    (c4, r4), (c3, r3) = tumour_centre_and_radius(coarse, 4.0), tumour_centre_and_radius(fine, 3.0)
    # Voxel centres sit at (i + 0.5) * voxel - extent / 2 mm.
    mm4 = (c4 + 0.5) * 4.0 - np.array(coarse.baseline_labels.shape[::-1]) * 2.0
    mm3 = (c3 + 0.5) * 3.0 - np.array(fine.baseline_labels.shape[::-1]) * 1.5
    assert np.linalg.norm(mm4 - mm3) < 2.0 and abs(r4 - r3) < 2.0


# --- lesions --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_tumour_at_baseline_and_cavity_at_follow_up(seed):
    pair = case(seed)
    base, follow = np.bincount(pair.baseline_labels.ravel(), minlength=9), np.bincount(
        pair.followup_labels.ravel(), minlength=9)
    assert base[ENHANCING] > 0 and base[NECROSIS] > 0 and base[OEDEMA] > 0 and base[CAVITY] == 0
    assert follow[CAVITY] > 0 and follow[NECROSIS] == 0
    assert follow[CAVITY] < base[ENHANCING] + base[NECROSIS]           # the cavity collapses a little
    assert follow[OEDEMA] < base[OEDEMA]                               # the oedema recedes
    # The cavity is where the tumour was.
    pulled = pull_baseline_labels(pair)[pair.followup_labels == CAVITY]
    assert np.isin(pulled, (ENHANCING, NECROSIS)).mean() > 0.9
    # A glioma in one hemisphere.
    centre, radius = tumour_centre_and_radius(pair)
    assert 8.0 < radius < 32.0
    assert abs(centre[0] - (pair.baseline_labels.shape[2] - 1) / 2) * VOXEL > 0.3 * radius


@pytest.mark.parametrize("seed", (1, 3))
def test_mass_effect_is_local_and_relaxes(seed):
    """Same seed, mass effect kept whole at follow-up or relaxed: the fields differ near the tumour only."""
    kept, relaxed = case(seed, relaxation=1.0), case(seed)
    centre, radius = tumour_centre_and_radius(kept)
    diff = np.linalg.norm(kept.followup_to_baseline - relaxed.followup_to_baseline, axis=0) * VOXEL
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in diff.shape], indexing="ij"))
    dist = np.linalg.norm(grid - centre[::-1].reshape(3, 1, 1, 1), axis=0) * VOXEL
    shell = (dist > radius + 2) & (dist < radius + 8)
    assert np.median(diff[shell]) > 2.0
    assert diff[dist > 2.5 * radius + 60].max() < 0.05


# --- landmarks and the true deformation -----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_landmarks_lie_in_the_brain_outside_tumour_and_cavity(seed):
    pair = case(seed)
    n = len(pair.landmark_kinds)
    assert 6 <= n <= 50
    assert set(pair.landmark_kinds) <= {"bifurcation", "ventricle_horn", "cortex", "midline"}
    assert {"cortex", "ventricle_horn"} <= set(pair.landmark_kinds)
    for points, labels in ((pair.baseline_landmarks, pair.baseline_labels),
                           (pair.followup_landmarks, pair.followup_labels)):
        assert np.all(points >= 0) and np.all(points <= np.array(labels.shape[::-1]) - 1)
        at = labels[tuple(np.rint(points[:, ::-1]).astype(int).T)]
        assert np.all(at > 0)
        assert not np.isin(at, (ENHANCING, NECROSIS, CAVITY)).any()
    assert len({tuple(p) for p in np.round(pair.baseline_landmarks, 3)}) == n


def test_landmark_count_follows_the_settings():
    counts = [len(case(seed, landmarks_min=8, landmarks_max=10).landmark_kinds) for seed in (0, 1)]
    assert all(8 <= c <= 10 for c in counts)


@pytest.mark.parametrize("seed", SEEDS)
def test_landmarks_correspond_through_the_field(seed):
    pair = case(seed)
    moved = pair.followup_landmarks + sample_field(pair.followup_to_baseline, pair.followup_landmarks)
    assert np.abs(moved - pair.baseline_landmarks).max() < 0.1


def test_landmarks_correspond_through_the_field_at_fine_resolution():
    pair = case(0, voxel=2.0)
    moved = pair.followup_landmarks + sample_field(pair.followup_to_baseline, pair.followup_landmarks)
    assert np.abs(moved - pair.baseline_landmarks).max() < 0.1


@pytest.mark.parametrize("seed", SEEDS)
def test_anatomy_agrees_under_the_field_away_from_the_lesion(seed):
    pair = case(seed)
    pulled = pull_baseline_labels(pair)
    lesion = np.isin(pair.baseline_labels, (OEDEMA, ENHANCING, NECROSIS)) | np.isin(
        pair.followup_labels, (OEDEMA, ENHANCING, CAVITY))
    away = ndi.distance_transform_edt(~lesion) * VOXEL > 10
    follow = pair.followup_labels
    assert dice((pulled == WM) & away, (follow == WM) & away) > 0.8
    tissue = dice(np.isin(pulled, (GM, WM)) & away, np.isin(follow, (GM, WM)) & away)
    unregistered = dice(np.isin(pair.baseline_labels, (GM, WM)) & away, np.isin(follow, (GM, WM)) & away)
    assert tissue > 0.9 and tissue > unregistered + 0.02


def test_grey_matter_agrees_under_the_field_at_fine_resolution():
    pair = case(0, voxel=2.0)
    pulled = pull_baseline_labels(pair)
    lesion = np.isin(pair.baseline_labels, (OEDEMA, ENHANCING, NECROSIS)) | np.isin(
        pair.followup_labels, (OEDEMA, ENHANCING, CAVITY))
    away = ndi.distance_transform_edt(~lesion) * 2.0 > 10
    assert dice((pulled == GM) & away, (pair.followup_labels == GM) & away) > 0.7
    assert dice((pulled == WM) & away, (pair.followup_labels == WM) & away) > 0.9


@pytest.mark.parametrize("seed, settings", [(s, ()) for s in SEEDS] + [
    (1, (("relaxation", 1.0),)), (3, (("relaxation", 1.0),)),
    (4, (("mass_effect_mm", 15.0), ("random_deformation_mm", 10.0), ("tumour_radius_mm", (6.0, 10.0))))])
def test_field_is_invertible(seed, settings):
    field = case(seed, **dict(settings)).followup_to_baseline.astype(np.float64)
    grad = [np.gradient(field[c]) for c in range(3)]              # grad[c][axis], axes (z, y, x)
    jac = [[grad[i][2 - j] + (i == j) for j in range(3)] for i in range(3)]
    det = (jac[0][0] * (jac[1][1] * jac[2][2] - jac[1][2] * jac[2][1])
           - jac[0][1] * (jac[1][0] * jac[2][2] - jac[1][2] * jac[2][0])
           + jac[0][2] * (jac[1][0] * jac[2][1] - jac[1][1] * jac[2][0]))
    assert det.min() > 0.02


def test_unregistered_landmark_error_is_realistic():
    medians, largest = [], []
    for seed in SEEDS:
        pair = case(seed)
        error = np.linalg.norm(pair.baseline_landmarks - pair.followup_landmarks, axis=1) * VOXEL
        medians.append(np.median(error))
        largest.append(error.max())
    assert 1.5 < np.median(medians) < 12.0
    assert min(medians) > 0.5 and max(largest) < 30.0


@pytest.mark.parametrize("seed", SEEDS)
def test_some_landmarks_lie_close_to_the_tumour(seed):
    pair = case(seed)
    centre, radius = tumour_centre_and_radius(pair)
    dist = np.linalg.norm(pair.baseline_landmarks - centre, axis=1) * VOXEL
    assert (dist < radius + 20.0).sum() >= 1
    assert dist.min() > radius * 0.8
