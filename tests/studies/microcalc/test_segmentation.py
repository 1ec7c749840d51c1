"""The whole-mammogram model: windows overlapping by N/2 over the breast, the Detector on each window as the patch
at its centre, the Segmentator only inside candidate windows (equal there to the patch-by-patch reference), the
mask of a stub network whose output is known, 8-connected calcifications and the cluster rule at two pixel
sizes, against a brute-force count."""

import itertools

import numpy as np
import pytest
import torch
from scipy.sparse.csgraph import connected_components
from torch import nn

from medrepro.errors import ConfigError, DataError
from medrepro.studies.microcalc import dense, networks, segmentation
from medrepro.studies.microcalc.patches import breast_mask

SMALL = dict(widths=(4, 4, 8, 8, 8, 8), hidden=8)
PATCH = 15
BREAST, BRIGHT = 0.3, 0.9


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as the workflow's jobs run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Stub(nn.Module):
    """A network whose P(positive) is the patch's centre pixel (``reduce="centre"``) or its maximum, clipped into
    (0, 1): logits log(1 - p), log(p) give exactly p through the softmax."""

    def __init__(self, patch: int, reduce: str):
        super().__init__()
        self.patch, self.reduce = patch, reduce
        self.unused = nn.Parameter(torch.zeros(()))  # the model's device is its parameters'
        self.eval()

    def forward(self, x):
        half = self.patch // 2
        p = x[:, 0, half, half] if self.reduce == "centre" else x.flatten(1).amax(dim=1)
        p = p.clamp(1e-4, 1 - 1e-4)
        return torch.stack([torch.log1p(-p), torch.log(p)], dim=1)


def _phantom() -> np.ndarray:
    """A 72 x 84 image: background 0, a breast disc of 0.3 touching the right edge, bright specks (0.9) in it
    (a 2 x 2 blob, a diagonal pair, a single pixel near the skin line) and one speck in the background."""
    rows, cols = np.mgrid[:72, :84]
    image = np.where((rows - 36) ** 2 + (cols - 84) ** 2 < 34 ** 2, BREAST, 0.0).astype(np.float32)
    image[30:32, 60:62] = BRIGHT  # blob
    image[45, 70] = image[46, 71] = BRIGHT  # diagonal pair: one calcification under 8-connectivity
    image[36, 53] = BRIGHT  # one pixel 2 pixels inside the skin line
    image[5, 5] = BRIGHT  # background: not breast
    return image


def _small(cls, seed: int) -> networks.MicrocalcNet:
    torch.manual_seed(seed)
    return cls(PATCH, "same", **SMALL).eval()


# ---- windows -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("length,size", [(100, 15), (85, 15), (15, 15), (49, 49), (200, 49), (121, 49)])
def test_windows_step_by_half_a_window_and_end_at_the_edge(length, size):
    starts = segmentation.window_starts(length, size)
    assert starts[0] == 0 and starts[-1] == length - size
    steps = np.diff(starts)
    assert (steps[:-1] == size // 2).all() and (steps <= size // 2).all()
    assert (size - steps >= size / 2).all()  # the overlap is at least N / 2


def test_no_window_fits_an_axis_shorter_than_it():
    assert segmentation.window_starts(14, 15).size == 0


def test_examined_windows_are_those_holding_breast_and_cover_it():
    image = _phantom()
    breast = breast_mask(image, "phantom")
    tops, lefts = segmentation.breast_windows(breast, PATCH)
    all_tops, all_lefts = (s.ravel() for s in np.meshgrid(segmentation.window_starts(72, PATCH),
                                                          segmentation.window_starts(84, PATCH), indexing="ij"))
    holding = [breast[t:t + PATCH, l:l + PATCH].any() for t, l in zip(all_tops, all_lefts)]
    assert set(zip(tops, lefts)) == {(t, l) for t, l, h in zip(all_tops, all_lefts, holding) if h}
    assert len(tops) < len(all_tops)  # windows of background alone are skipped
    covered = segmentation.window_union(breast.shape, tops, lefts, PATCH)
    assert covered[breast].all()


def test_window_union_is_the_pixels_of_the_windows():
    tops, lefts = np.array([0, 7, 30]), np.array([3, 10, 0])
    expected = np.zeros((50, 40), dtype=bool)
    for t, l in zip(tops, lefts):
        expected[t:t + PATCH, l:l + PATCH] = True
    assert np.array_equal(segmentation.window_union((50, 40), tops, lefts, PATCH), expected)


def test_covering_rectangles_partition_a_union_of_windows():
    rng = np.random.default_rng(0)
    tops, lefts = rng.integers(0, 60, 8), rng.integers(0, 50, 8)
    covered = segmentation.window_union((75, 65), tops, lefts, PATCH)
    count = np.zeros(covered.shape, dtype=int)
    for top, bottom, left, right in segmentation.covering_rectangles(covered):
        count[top:bottom, left:right] += 1
    assert np.array_equal(count, covered.astype(int))


def test_detector_classifies_each_window_as_the_patch_at_its_centre():
    image = _phantom()
    detector = _small(networks.Detector, 1)
    windows = segmentation.candidate_windows(detector, image, breast_mask(image, "phantom"), batch_size=5)
    rows, cols = windows.centres
    assert (rows - windows.tops == PATCH // 2).all() and (cols - windows.lefts == PATCH // 2).all()
    cut = np.stack([image[t:t + PATCH, l:l + PATCH] for t, l in zip(windows.tops, windows.lefts)])
    with torch.no_grad():
        expected = networks.positive_probability(detector(torch.from_numpy(cut)[:, None])).numpy()
    np.testing.assert_allclose(windows.probability, expected, atol=1e-6)
    assert np.array_equal(windows.candidate, windows.probability > 0.5)


# ---- the Segmentator -----------------------------------------------------------------------------------------

def test_segmentator_runs_only_in_candidate_windows_and_equals_the_reference_there():
    image = _phantom()
    breast = breast_mask(image, "phantom")
    result = segmentation.segment_mammogram(Stub(PATCH, "max"), _small(networks.Segmentator, 2), image,
                                            pixel_mm=0.05, fill=0.0)
    windows = result.windows
    assert 0 < windows.candidate.sum() < len(windows)  # only windows with a bright speck
    inside = segmentation.window_union(image.shape, windows.tops[windows.candidate],
                                       windows.lefts[windows.candidate], PATCH) & breast
    assert (result.probability[~inside] == 0).all()
    rows, cols = np.nonzero(inside)
    region = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    reference = dense.patch_probabilities(_small(networks.Segmentator, 2), image, 0.0, region)
    np.testing.assert_allclose(result.probability[region][inside[region]], reference[inside[region]], atol=1e-5)
    assert (result.probability[inside] > 0).all()


def test_stub_networks_give_the_thresholded_image_inside_the_breast():
    image = _phantom()
    breast = breast_mask(image, "phantom")
    result = segmentation.segment_mammogram(Stub(PATCH, "max"), Stub(PATCH, "centre"), image, pixel_mm=0.05)
    assert np.array_equal(result.mask, (image > 0.5) & breast)
    assert not result.mask[5, 5]  # the background speck was never examined
    assert len(result.calcifications) == 3 and len(result.clusters) == 0
    assert result.seconds > 0


def test_threshold_is_strict_and_configurable():
    image = _phantom()
    image[20, 70] = 0.5
    result = segmentation.segment_mammogram(Stub(PATCH, "max"), Stub(PATCH, "centre"), image, pixel_mm=0.05)
    assert not result.mask[20, 70]
    lower = segmentation.segment_mammogram(Stub(PATCH, "max"), Stub(PATCH, "centre"), image, pixel_mm=0.05,
                                           threshold=0.2, detector_threshold=0.2)
    assert lower.windows.candidate.all()  # every window holds breast of 0.3
    assert np.array_equal(lower.mask, (image > 0.2) & breast_mask(image, "phantom"))


def test_networks_must_be_in_eval_mode_and_the_image_hold_a_window():
    image = _phantom()
    with pytest.raises(ValueError, match="eval mode"):
        segmentation.segment_mammogram(Stub(PATCH, "max"), Stub(PATCH, "centre").train(), image)
    with pytest.raises(DataError, match="smaller"):
        segmentation.segment_mammogram(Stub(PATCH, "max"), Stub(PATCH, "centre"), image[:10], name="tiny")


# ---- calcifications ------------------------------------------------------------------------------------------

def test_calcifications_are_8_connected_components_with_centroids_and_areas():
    mask = np.zeros((12, 12), dtype=bool)
    mask[1:3, 1:3] = True  # 4 pixels
    mask[5, 5] = mask[6, 6] = mask[7, 7] = True  # a diagonal line: one calcification
    mask[10, 1] = True
    found = segmentation.label_calcifications(mask)
    assert len(found) == 3
    np.testing.assert_array_equal(found.areas, [4, 3, 1])
    np.testing.assert_allclose(found.centroids, [[1.5, 1.5], [6.0, 6.0], [10.0, 1.0]])
    assert found.labels[6, 6] == 2 and found.labels[0, 0] == 0


def test_an_empty_mask_has_no_calcification():
    found = segmentation.label_calcifications(np.zeros((5, 5), dtype=bool))
    assert len(found) == 0 and found.centroids.shape == (0, 2)
    assert len(segmentation.cluster_calcifications(found.centroids, 0.05)) == 0


# ---- clusters ------------------------------------------------------------------------------------------------

def _in_mm(points_mm, pixel_mm):
    return 1000 + np.asarray(points_mm, dtype=float) / pixel_mm


SIX_IN_A_CM = [(0, 0), (0, 9), (9, 0), (9, 9), (4.5, 4.5), (2, 7)]  # mm, within a 9 mm square
SPREAD_OVER_2_CM = [(4 * k, 4 * k) for k in range(6)]  # 4 mm apart along both axes: at most 3 in a 1 cm square


@pytest.mark.parametrize("pixel_mm", [0.05, 0.1])
def test_more_than_five_in_a_square_centimetre_make_a_cluster(pixel_mm):
    clusters = segmentation.cluster_calcifications(_in_mm(SIX_IN_A_CM, pixel_mm), pixel_mm)
    assert len(clusters) == 1 and clusters.sizes.tolist() == [6]
    np.testing.assert_array_equal(clusters.membership, 0)
    np.testing.assert_allclose(clusters.centroids[0], _in_mm(SIX_IN_A_CM, pixel_mm).mean(axis=0))
    assert len(segmentation.cluster_calcifications(_in_mm(SIX_IN_A_CM[:5], pixel_mm), pixel_mm)) == 0
    spread = segmentation.cluster_calcifications(_in_mm(SPREAD_OVER_2_CM, pixel_mm), pixel_mm)
    assert len(spread) == 0 and (spread.membership == -1).all()


@pytest.mark.parametrize("pixel_mm,side", [(0.05, 200), (0.1, 100)])
def test_the_square_is_one_centimetre_of_pixels(pixel_mm, side):
    assert segmentation.ClusterRule().side_px(pixel_mm) == side
    fits = np.array([(0, 0), (0, side - 1), (side - 1, 0), (side - 1, side - 1), (10, 10), (20, 30)]) + 500.0
    assert len(segmentation.cluster_calcifications(fits, pixel_mm)) == 1
    too_wide = fits.copy()
    too_wide[3] = (500 + side - 1, 500 + side)  # one pixel beyond the square: no square holds all six
    assert len(segmentation.cluster_calcifications(too_wide, pixel_mm)) == 0


def test_clusters_are_connected_groups_and_loners_stay_out():
    pixel_mm = 0.1
    chain = [(0, 1.5 * k) for k in range(12)]  # 16.5 mm long, 7 in every 1 cm: one cluster
    far = [(40 + r, 40 + c) for r, c in SIX_IN_A_CM]
    loner = [(0, 60)]
    clusters = segmentation.cluster_calcifications(_in_mm(chain + far + loner, pixel_mm), pixel_mm)
    assert clusters.sizes.tolist() == [12, 6]
    np.testing.assert_array_equal(clusters.membership, [0] * 12 + [1] * 6 + [-1])
    np.testing.assert_allclose(clusters.boxes[0], [1000, 1000, 1000, 1000 + 165])


def _brute_force_clusters(points: np.ndarray, side: int, more_than: int) -> np.ndarray:
    """Membership by trying every square: clustered points and their links from the dense squares."""
    n = len(points)
    low, high = points.min(axis=0) - side + 1, points.max(axis=0)
    link = np.zeros((n, n), dtype=bool)
    for top, left in itertools.product(range(low[0], high[0] + 1), range(low[1], high[1] + 1)):
        inside = ((points[:, 0] >= top) & (points[:, 0] < top + side) & (points[:, 1] >= left)
                  & (points[:, 1] < left + side))
        if inside.sum() > more_than:
            link |= inside[:, None] & inside[None, :]
    clustered = link.diagonal()
    _, component = connected_components(link, directed=False)
    membership = np.full(n, -1)
    if clustered.any():
        membership[clustered] = np.unique(component[clustered], return_inverse=True)[1]
    return membership


@pytest.mark.parametrize("seed", range(4))
def test_clusters_equal_a_brute_force_count(seed):
    rng = np.random.default_rng(seed)
    points = rng.integers(0, 30, size=(25, 2)).astype(float) + rng.uniform(-0.4, 0.4, size=(25, 2))
    rule = segmentation.ClusterRule(side_mm=8.0, more_than=3)  # 8-pixel squares at 1 mm
    clusters = segmentation.cluster_calcifications(points, 1.0, rule)
    expected = _brute_force_clusters(segmentation.centroid_pixels(points), 8, 3)
    np.testing.assert_array_equal(clusters.membership, expected)


def test_cluster_rule_refuses_nonsense():
    with pytest.raises(ConfigError):
        segmentation.ClusterRule(side_mm=0)
    with pytest.raises(ConfigError):
        segmentation.ClusterRule(more_than=-1)
    with pytest.raises(ConfigError):
        segmentation.ClusterRule().side_px(0.0)
