"""Patch classes read from hand-built masks (both metrics, both readings of distance 1) and for every centre at
once; the breast, candidate centres, splits by image and the held-out class mix."""

import numpy as np
import pytest

from medrepro.errors import ConfigError, DataError
from medrepro.studies.microcalc import patches
from medrepro.studies.microcalc.patches import C1, C2, C3, C4, Labelling

N = 49
HALF = N // 2


def mask_with(*offsets, size=N):
    """A patch mask with calcification pixels at ``offsets`` (row, col) from its centre."""
    mask = np.zeros((size, size), dtype=bool)
    for dr, dc in offsets:
        mask[size // 2 + dr, size // 2 + dc] = True
    return mask


@pytest.mark.parametrize("metric", patches.METRICS)
@pytest.mark.parametrize("offsets, expected", [
    ([(0, 0)], C1),
    ([(0, 1)], C2), ([(1, 1)], C2), ([(-1, 0)], C2),  # distance 1, side and diagonal
    ([(2, 0)], C2), ([(2, 2)], C2),  # distance 2 (the diagonal one 2.83 in Euclidean terms)
    ([(0, 3)], C2), ([(-3, 0)], C2),  # distance 3
    ([(0, 4)], C3), ([(10, -7)], C3),  # farther in the patch
    ([(0, HALF)], C3), ([(-HALF, -HALF)], C3), ([(HALF, 5)], C3),  # on the patch's border
    ([], C4),
    ([(0, 0), (0, 3), (HALF, HALF)], C1),  # the centre wins over the rest
    ([(0, 2), (HALF, 0)], C2),  # the nearest calcification decides
])
def test_classes_by_distance_from_the_centre_in_both_metrics(metric, offsets, expected):
    assert patches.patch_class(mask_with(*offsets), Labelling(metric=metric)) == expected


def test_the_metrics_differ_only_off_the_axes():
    chebyshev, euclidean = Labelling("chebyshev"), Labelling("euclidean")
    for offset in [(3, 3), (3, 1), (-2, 3)]:  # Chebyshev 3; Euclidean 4.24, 3.16, 3.61
        assert patches.patch_class(mask_with(offset), chebyshev) == C2
        assert patches.patch_class(mask_with(offset), euclidean) == C3


@pytest.mark.parametrize("metric", patches.METRICS)
def test_the_literal_band_makes_distance_one_peripheral(metric):
    literal = Labelling(metric=metric, band=(2, 3))
    assert patches.patch_class(mask_with((0, 1)), literal) == C3
    assert patches.patch_class(mask_with((1, 1)), literal) == C3
    assert patches.patch_class(mask_with((0, 2)), literal) == C2
    assert patches.patch_class(mask_with((3, 0)), literal) == C2
    assert patches.patch_class(mask_with((0, 1), (0, 2)), literal) == C3  # the nearest pixel decides
    assert patches.patch_class(mask_with((0, 0)), literal) == C1


def test_labels_of_the_detector_and_the_segmentator():
    classes = np.array([C1, C2, C3, C4])
    assert patches.detector_label(classes).tolist() == [1, 1, 1, 0]
    assert patches.segmentator_label(classes).tolist() == [1, 0, 0, 0]


def brute_force_classes(mask, size, labelling):
    """Each centre's class by the definition, one centre at a time."""
    half = size // 2
    calc = np.argwhere(mask)
    out = np.zeros(mask.shape, dtype=np.uint8)
    for r in range(mask.shape[0]):
        for c in range(mask.shape[1]):
            delta = np.abs(calc - [r, c])
            in_patch = (delta.max(axis=1) <= half).any()
            if labelling.metric == "chebyshev":
                distance = delta.max(axis=1).min() if len(calc) else np.inf
            else:
                distance = np.sqrt((delta**2).sum(axis=1)).min() if len(calc) else np.inf
            if mask[r, c]:
                out[r, c] = C1
            elif in_patch and labelling.band[0] <= distance <= labelling.band[1]:
                out[r, c] = C2
            else:
                out[r, c] = C3 if in_patch else C4
    return out


@pytest.mark.parametrize("labelling", [Labelling("chebyshev"), Labelling("euclidean"),
                                       Labelling("euclidean", (2, 3)), Labelling("chebyshev", (2, 2))])
@pytest.mark.parametrize("size", [3, 5, 7])
def test_the_class_map_gives_every_centre_its_class(labelling, size):
    rng = np.random.default_rng(size)
    mask = rng.random((26, 23)) < 0.02
    mask[5:7, 15:18] = True
    assert np.array_equal(patches.class_map(mask, size, labelling), brute_force_classes(mask, size, labelling))


def test_the_class_map_of_an_image_without_calcification_is_all_c4():
    assert (patches.class_map(np.zeros((30, 40), bool), 9) == C4).all()


@pytest.mark.parametrize("size, problem", [(48, "even"), (2, "below 3"), (0, "below 3"), (-3, "below 3"),
                                           (4.0, "not an integer")])
def test_a_patch_size_that_is_even_or_below_three_is_refused(size, problem):
    with pytest.raises(ConfigError, match=problem):
        patches.check_patch_size(size)
    with pytest.raises(ConfigError, match=problem):
        patches.class_map(np.zeros((60, 60), bool), size)


def test_the_paper_sizes_are_accepted_and_a_patch_of_even_side_is_refused():
    assert [patches.check_patch_size(n) for n in patches.PATCH_SIZES] == [29, 39, 49]
    with pytest.raises(ConfigError, match="even"):
        patches.patch_class(np.zeros((48, 48), bool))
    with pytest.raises(ConfigError, match="even"):
        patches.cut_patches(np.zeros((60, 60)), [30], [30], 10)


def test_a_labelling_with_an_unknown_metric_or_an_empty_band_is_refused():
    with pytest.raises(ConfigError, match="manhattan"):
        Labelling(metric="manhattan")
    with pytest.raises(ConfigError, match="band"):
        Labelling(band=(3, 2))
    assert Labelling.from_section({"metric": "euclidean", "band": [2, 3]}) == Labelling("euclidean", (2.0, 3.0))


def breast_image(shape=(120, 100), seed=0):
    """A half-ellipse breast (0.5) on the left edge over a dark background (0.05), with a bright label off it."""
    rng = np.random.default_rng(seed)
    r, c = np.mgrid[:shape[0], :shape[1]]
    breast = ((r - shape[0] / 2) / (shape[0] * 0.4)) ** 2 + (c / (shape[1] * 0.7)) ** 2 <= 1
    image = np.where(breast, 0.5, 0.05) + rng.normal(0, 0.01, shape)
    image[2:8, 85:95] = 0.9  # a film label: bright, but not the breast
    image[55:58, 30:33] = 0.05  # a dark spot inside the breast: a hole the breast keeps
    return image, breast


def test_the_breast_is_the_largest_bright_region_with_its_holes_filled():
    image, breast = breast_image()
    found = patches.breast_mask(image, "case1")
    assert np.array_equal(found, breast)
    assert not found[2:8, 85:95].any()


@pytest.mark.parametrize("image", [np.full((50, 40), 0.3), np.zeros((50, 40))])
def test_an_image_with_no_breast_is_refused_naming_it(image):
    with pytest.raises(DataError, match="empty_view.*no breast"):
        patches.breast_mask(image, "empty_view")


def test_an_image_with_nan_pixels_is_refused_naming_it():
    image, _ = breast_image()
    image[3, 3] = np.nan
    with pytest.raises(DataError, match="case7.*NaN"):
        patches.breast_mask(image, "case7")


def test_candidate_centres_are_in_the_breast_with_the_whole_patch_in_the_image():
    image, breast = breast_image()
    valid = patches.candidate_centres(breast, 11)
    assert valid.any() and not (valid & ~breast).any()
    rows, cols = np.nonzero(valid)
    assert rows.min() >= 5 and cols.min() >= 5 and rows.max() <= 114 and cols.max() <= 94
    cut = patches.cut_patches(image, rows[:3], cols[:3], 11)
    assert cut.dtype == np.float32 and cut.shape == (3, 11, 11)
    assert np.array_equal(cut[0], image[rows[0] - 5:rows[0] + 6, cols[0] - 5:cols[0] + 6].astype(np.float32))
    with pytest.raises(ValueError, match="edge"):
        patches.cut_patches(image, [4], [50], 11)


def image_with_calcifications(seed=0):
    image, breast = breast_image(seed=seed)
    mask = np.zeros_like(breast)
    mask[40:43, 20:22] = mask[70, 35] = mask[60:64, 10:13] = True
    return image, breast, mask


def test_training_centres_keep_every_rare_centre_up_to_the_cap_and_background_on_the_grid():
    image, breast, mask = image_with_calcifications()
    classes = patches.class_map(mask, 11)
    valid = patches.candidate_centres(breast, 11)
    sampling = patches.CandidateSampling(positive_cap=40, background_stride=6, background_cap=25)
    centres = patches.training_centres(classes, valid, sampling, np.random.default_rng(0))
    counts = np.bincount(centres.classes, minlength=5)
    available = [(valid & (classes == c)).sum() for c in range(5)]
    assert counts[C1] == available[C1] == 19  # fewer than the cap: all of them
    assert counts[C2] == counts[C3] == 40 and available[C2] > 40 and available[C3] > 40
    assert counts[C4] == 25
    assert valid[centres.rows, centres.cols].all()
    assert np.array_equal(classes[centres.rows, centres.cols], centres.classes)
    background = centres.classes == C4
    assert (centres.rows[background] % 6 == 3).all() and (centres.cols[background] % 6 == 3).all()
    again = patches.training_centres(classes, valid, sampling, np.random.default_rng(0))
    assert np.array_equal(again.rows, centres.rows) and np.array_equal(again.cols, centres.cols)


def test_a_candidate_sampling_with_a_cap_or_stride_below_one_is_refused():
    with pytest.raises(ConfigError, match="background_stride"):
        patches.CandidateSampling(background_stride=0)


def test_the_paper_images_split_as_231_25_27_and_every_image_once():
    names = [f"mammogram_{i:03d}" for i in range(283)]
    split = patches.split_images(names, seed=3)
    assert sorted(split) == sorted(names)
    assert {s: list(split.values()).count(s) for s in patches.SPLITS} == {"train": 231, "val": 25, "test": 27}
    assert patches.split_images(reversed(names), seed=3) == split  # the input order does not matter
    assert patches.split_images(names, seed=4) != split


@pytest.mark.parametrize("n, expected", [(12, (10, 1, 1)), (3, (1, 1, 1)), (40, (32, 4, 4)), (100, (81, 9, 10))])
def test_few_images_split_in_the_paper_proportions_with_one_image_at_least_per_split(n, expected):
    assert tuple(patches.split_sizes(n).values()) == expected


def test_two_images_cannot_be_split():
    with pytest.raises(ConfigError, match="at least 3"):
        patches.split_images(["a", "b"], seed=0)


def test_the_default_mix_gives_the_paper_overall_accuracies_from_its_class_errors():
    counts = patches.class_counts(6000)
    assert counts == {C1: 3000, C2: 1000, C3: 1000, C4: 1000}
    table1 = {"detector same": ([0.09, 0.47, 7.84, 2.09], 98.22), "detector valid": ([0.19, 1.22, 20.28, 1.69], 96.04),
              "segmentator same": ([1.57, 10.03, 0.24, 0.20], 97.47),
              "segmentator valid": ([1.85, 15.32, 0.34, 0.55], 96.37)}
    for errors, overall in table1.values():
        weighted = sum(counts[c] * e for c, e in zip(patches.CLASSES, errors)) / sum(counts.values())
        assert 100 - weighted == pytest.approx(overall, abs=0.006)


def test_class_counts_add_up_and_a_bad_mix_is_refused():
    assert sum(patches.class_counts(7).values()) == 7
    assert patches.class_counts(10, {1: 1, 4: 1}) == {C1: 5, C2: 0, C3: 0, C4: 5}
    with pytest.raises(ConfigError, match="unknown class"):
        patches.class_counts(10, {5: 1})
    with pytest.raises(ConfigError, match="non-negative"):
        patches.class_counts(10, {1: -1, 2: 1})


def offer_images(draw, images):
    for image_id, (image, breast, mask) in images:
        classes = patches.class_map(mask, 11)
        draw.offer(image_id, image, classes, patches.candidate_centres(breast, 11),
                   patches.image_rng(0, f"image{image_id}"))


def test_the_held_out_draw_has_the_mix_and_does_not_depend_on_the_order_of_the_images():
    images = [(i, image_with_calcifications(seed=i)) for i in (1, 2, 3)]
    forward, backward = patches.HeldOutDraw(48, 11), patches.HeldOutDraw(48, 11)
    offer_images(forward, images)
    offer_images(backward, images[::-1])
    drawn, again = forward.result("val"), backward.result("val")
    assert np.bincount(drawn.classes, minlength=5)[1:].tolist() == [24, 8, 8, 8]
    assert np.array_equal(drawn.images, again.images) and np.array_equal(drawn.rows, again.rows)
    assert np.array_equal(drawn.pixels, again.pixels)
    assert set(drawn.images.tolist()) == {1, 2, 3}  # drawn from every image, not the first ones
    assert len({(i, r, c) for i, r, c in zip(drawn.images, drawn.rows, drawn.cols)}) == 48  # no repeat
    image, breast, mask = images[0][1]
    first = np.flatnonzero(drawn.images == 1)[0]
    r, c = drawn.rows[first], drawn.cols[first]
    assert np.array_equal(drawn.pixels[first], image[r - 5:r + 6, c - 5:c + 6].astype(np.float32))
    assert drawn.classes[first] == patches.class_map(mask, 11)[r, c]


def test_a_scarce_class_shrinks_the_held_out_set_but_keeps_its_mix():
    draw = patches.HeldOutDraw(600, 11)  # 300 C1 wanted; three images hold 57
    offer_images(draw, [(i, image_with_calcifications(seed=i)) for i in (1, 2, 3)])
    counts = np.bincount(draw.result("test").classes, minlength=5)[1:]
    assert counts.tolist() == [57, 19, 19, 19]


def test_held_out_images_without_calcification_are_refused():
    image, breast, mask = image_with_calcifications()
    draw = patches.HeldOutDraw(60, 11)
    offer_images(draw, [(1, (image, breast, np.zeros_like(mask)))])
    with pytest.raises(DataError, match="test images hold no patch centre of class C1, C2, C3"):
        draw.result("test")
