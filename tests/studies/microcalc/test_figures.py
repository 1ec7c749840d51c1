"""The figures' choice rules on hand-built arrays and tables, and every figure drawn from a tiny synthetic INbreast
(four 260 x 220 images at 0.1 mm) with narrow networks trained for a few steps."""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from medrepro.errors import DataError
from medrepro.studies.microcalc import figures
from medrepro.studies.microcalc.figures import (
    Detections, FeatureView, border_distance_mm, border_false_positives, choose_border_case, choose_patches,
    choose_region_image, crop_box, densest, near_border, read_predicted_mask, region_centre, synthetic_examples,
    worst_pairs, zoom_centre,
)
from medrepro.studies.microcalc.patches import patch_class
from medrepro.studies.microcalc.segmentation import ClusterRule
from support import training as support_training
from support.smoke import PNG_SIGNATURE

pytestmark = pytest.mark.usefixtures("restore_thread_count")


def is_png(path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG_SIGNATURE


# ---------------------------------------------------------------- rules: crops and choices


def test_a_crop_is_moved_inside_the_image_and_shrinks_to_fit():
    assert crop_box((50, 50), 20, (100, 80)) == (slice(40, 60), slice(40, 60))
    assert crop_box((2, 79), 20, (100, 80)) == (slice(0, 20), slice(60, 80))      # clipped at the top and right
    assert crop_box((99, -5), 20, (100, 80)) == (slice(80, 100), slice(0, 20))    # at the bottom and left
    assert crop_box((5, 5), 200, (30, 40)) == (slice(0, 30), slice(0, 40))       # larger than the image


def test_the_region_image_has_the_most_calcifications_detected_ties_by_name():
    scores = pd.DataFrame({"image": ["b", "a", "b", "a", "c"],
                           "convolution": ["same", "same", "valid", "valid", "same"],
                           "detected_calcifications": [3, 2, 1, 2, 4]})
    assert choose_region_image(scores) == "a"  # a: 4, b: 4, c: 4 -> the first name
    assert choose_region_image(scores.assign(detected_calcifications=[3, 2, 2, 2, 4])) == "b"
    with pytest.raises(DataError):
        choose_region_image(scores.iloc[:0])


def calcification_mask(shape, spots) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for row, col, side in spots:
        mask[row:row + side, col:col + side] = True
    return mask


def test_the_region_centre_is_the_largest_cluster_else_the_largest_calcification():
    # six small spots within 4 mm (a cluster at 0.1 mm: more than 5 in 1 cm^2) and one large spot far away
    cluster = [(20 + 6 * k, 30 + 5 * k, 2) for k in range(6)]
    mask = calcification_mask((300, 300), [*cluster, (250, 250, 5)])
    centre, what = region_centre(mask, 0.1, ClusterRule(10, 5))
    np.testing.assert_allclose(centre, (20 + 15 + 0.5, 30 + 12.5 + 0.5))
    assert "cluster" in what
    centre, what = region_centre(mask, 0.1, ClusterRule(10, 6))  # the rule now needs seven
    np.testing.assert_allclose(centre, (252, 252))
    assert "calcification" in what
    assert region_centre(np.zeros((10, 20), bool), 0.1, ClusterRule())[0] == (5, 10)


def test_the_synthetic_examples_are_first_digital_first_film_then_vessels():
    entries = [SimpleNamespace(file_name=n) for n in ("n0", "d1", "d2", "f3", "v4", "f5")]
    truth = pd.DataFrame({
        "file_name": ["d1", "d2", "d2", "f3", "v4", "f5", "f5"],
        "acquisition": ["digital", "digital", "digital", "film", "digital", "film", "film"],
        "structure": ["isolated", "cluster", "vascular", "near_skin", "vascular", "cluster", "vascular"],
    })
    names = [e.file_name for e in synthetic_examples(entries, truth, 4)]
    assert names == ["d1", "f3", "d2", "v4"]
    assert [e.file_name for e in synthetic_examples(entries, truth, 2)] == ["d1", "f3"]


def test_the_synthetic_zoom_is_on_the_largest_cluster():
    rows = pd.DataFrame({"structure": ["isolated", "cluster", "cluster", "cluster", "cluster", "cluster"],
                         "group": [-1, 0, 0, 1, 1, 1], "centre_row": [1, 10, 12, 50, 52, 54],
                         "centre_col": [1, 10, 12, 60, 62, 64], "path_px": [np.nan] * 6})
    assert zoom_centre(rows, (100, 100)) == ((52.0, 62.0), "its largest cluster")
    vessel = pd.DataFrame({"structure": ["vascular"], "group": [0], "centre_row": [0.0], "centre_col": [0.0],
                           "path_px": ["1.0 2.0;3.0 4.0;5.0 6.0"]})
    assert zoom_centre(vessel, (100, 100)) == ((3.0, 4.0), "a vascular tram track")


def test_the_border_distance_runs_both_ways_from_the_breast_edge():
    breast = np.zeros((20, 30), dtype=bool)
    breast[:, :20] = True  # the edge between columns 19 and 20
    distance = border_distance_mm(breast, 0.5)
    assert distance[5, 19] == 0.5 and distance[5, 20] == 0.5 and distance[5, 10] == 5.0 and distance[5, 29] == 5.0
    assert np.isinf(border_distance_mm(np.ones((4, 4), bool), 0.5)).all()  # no edge: nothing is near it


def test_the_border_rule_keeps_a_false_positive_near_the_edge_not_one_deep_inside():
    breast = np.zeros((60, 60), dtype=bool)
    breast[:, :40] = True  # the edge at column 40
    truth = calcification_mask(breast.shape, [(10, 38, 1)])
    near = (30, 38, 1)   # false, 2 pixels (1 mm) from the edge
    deep = (30, 5, 1)    # false, deep inside (17.5 mm)
    predicted = calcification_mask(breast.shape, [(10, 38, 1), near, deep])  # the first matches the truth
    found = border_false_positives(predicted, truth, breast, pixel_mm=0.5, match_px=2, border_mm=2.0)
    np.testing.assert_allclose(found, [[30, 38]])
    assert len(border_false_positives(predicted, truth, breast, 0.05, 2, border_mm=0.01)) == 0
    assert list(near_border(np.array([[30.0, 38], [30, 5]]), border_distance_mm(breast, 0.5))) == [True, False]


def detections(image, convolution, false, at_border) -> Detections:
    return Detections(image, convolution, np.asarray(false, float).reshape(-1, 2), np.asarray(at_border, bool))


def test_the_border_case_has_the_most_false_detections_at_the_edge_ties_by_name_then_variant():
    deep_many = detections("a", "same", [[1, 1], [2, 2], [3, 3]], [False, False, False])
    edge_one = detections("c", "valid", [[5, 5], [6, 6]], [True, False])
    case, at_border = choose_border_case([deep_many, edge_one])
    assert case is edge_one and at_border
    tie_b = detections("b", "same", [[5, 5]], [True])
    tie_b_valid = detections("b", "valid", [[5, 5]], [True])
    assert choose_border_case([edge_one, tie_b_valid, tie_b])[0] is tie_b_valid  # "b" before "c"; then the order
    # none at the edge: the most false detections anywhere, said so
    case, at_border = choose_border_case([deep_many, detections("b", "same", [[1, 1]], [False])])
    assert case is deep_many and not at_border
    with pytest.raises(DataError):
        choose_border_case([])


def test_the_densest_point_has_the_most_neighbours_in_the_crop():
    points = np.array([[0, 0], [50, 50], [51, 52], [49, 48], [90, 10]], dtype=float)
    assert densest(points, side=10) == (50.0, 50.0)
    assert densest(points[[0, 4]], side=10) == (0.0, 0.0)  # ties: the first


def test_every_misclassified_patch_is_chosen_first_then_a_seeded_draw():
    correct = np.array([1, 0, 1, 1, 0, 1, 1, 0])
    labels = np.array([1, 1, 0, 0, 0, 1, 0, 1])
    probability = np.array([0.9, 0.1, 0.2, 0.3, 0.8, 0.7, 0.1, 0.4])
    chosen = choose_patches(correct, probability, labels, 5, seed=0)
    assert {1, 4, 7} <= set(chosen) and len(chosen) == 5 and list(chosen) == sorted(chosen)
    np.testing.assert_array_equal(chosen, choose_patches(correct, probability, labels, 5, seed=0))
    # too many wrong ones: the most confidently wrong (patch 1: P(wrong) 0.9, then 4: 0.8)
    assert list(choose_patches(correct, probability, labels, 2, seed=0)) == [1, 4]
    assert len(choose_patches(correct, probability, labels, 100, seed=0)) == 8


def feature_view(correct, labels, probability, features) -> FeatureView:
    n = len(correct)
    return FeatureView("detector", "same", np.arange(n), np.zeros(n), np.zeros(n), np.zeros(n),
                       classes=np.where(np.asarray(labels) == 1, 2, 4), labels=np.asarray(labels),
                       probability=np.asarray(probability), correct=np.asarray(correct),
                       pixels=np.zeros((n, 3, 3)), features=np.asarray(features, float), embedding=np.zeros((n, 2)))


def test_worst_pairs_take_the_nearest_correct_patch_of_the_other_label():
    view = feature_view(correct=[0, 1, 1, 0, 1], labels=[1, 0, 0, 1, 0], probability=[0.05, 0.2, 0.1, 0.4, 0.3],
                        features=[[0.0, 0], [1, 0], [5, 5], [0.5, 0], [9, 9]])
    # patch 0 is wrong with P(wrong) 0.95, patch 3 with 0.6; their nearest correct negatives are 1 and 1
    assert worst_pairs(view, 5) == [(0, 1), (3, 1)]
    assert worst_pairs(view, 1) == [(0, 1)]
    no_other = feature_view([0, 1], [1, 1], [0.2, 0.9], [[0.0], [1.0]])  # no correct negative to compare with
    assert worst_pairs(no_other, 3) == []


def test_worst_pairs_without_a_failure_say_so(tmp_path):
    outs = {"detector": tmp_path / "d.png", "segmentator": tmp_path / "s.png"}
    all_right = feature_view([1, 1], [1, 0], [0.9, 0.1], [[0.0], [1.0]])
    figures.plot_worst_pairs({"detector": all_right}, tmp_path / "no-raw", None, 3, outs, tmp_path / "no.sqlite")
    assert is_png(outs["detector"]) and is_png(outs["segmentator"])


def test_a_predicted_mask_comes_back_from_its_packed_bits(tmp_path):
    mask = calcification_mask((7, 9), [(1, 2, 3)])
    np.savez(tmp_path / "m.npz", mask_a=np.packbits(mask), shape_a=np.asarray(mask.shape))
    np.testing.assert_array_equal(read_predicted_mask(tmp_path / "m.npz", "a", (7, 9)), mask)
    with pytest.raises(DataError, match="no predicted mask"):
        read_predicted_mask(tmp_path / "m.npz", "b")
    with pytest.raises(DataError, match="other raw files"):
        read_predicted_mask(tmp_path / "m.npz", "a", (9, 7))


# ---------------------------------------------------------------- every figure on a tiny run


SIZE = 11
ARCHITECTURE = dict(widths=(4, 4, 8, 8, 8, 8), hidden=8, dropout=0.5)
SEGMENTATION = {"cluster": {"side_mm": 10, "more_than": 5}, "match_px": 5}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A synthetic INbreast of four 260 x 220 images at 0.1 mm (its pixel size: nothing is resampled), its patch
    database, both networks (same convolutions) trained for a few steps, their test predictions and the
    whole-mammogram masks of the test image."""
    from medrepro.studies.microcalc.evaluation import patch_predictions
    from medrepro.studies.microcalc.mammograms import Source, image_names, read_mammograms
    from medrepro.studies.microcalc.patchdb import ExtractionSettings, PatchDatabase, build_patch_database
    from medrepro.studies.microcalc.patches import CandidateSampling, split_images
    from medrepro.studies.microcalc.scoring import score_image
    from medrepro.studies.microcalc.segmentation import segment_mammogram
    from medrepro.studies.microcalc.synthetic import generate_inbreast
    from medrepro.studies.microcalc.training import load_network, train_network

    root = tmp_path_factory.mktemp("tiny")
    raw = root / "INbreast"
    generate_inbreast(raw, n_images=4, seed=0, image_size=(260, 220))
    source = Source(pixel_mm=0.1)
    database = root / "patches.sqlite"
    build_patch_database(database, read_mammograms(raw, source), split_images(image_names(raw, source), 0),
                         ExtractionSettings(patch_size=SIZE, sampling=CandidateSampling(20, 8, 20),
                                            held_out={"val": 24, "test": 48}, seed=0))
    settings = partial(support_training.settings_for, steps=4, batch_size=8, lr=1e-2, seed=0, checkpoint_every=4,
                       log_every=2, val_every=2)
    models, logs, rows = {}, {}, []
    with PatchDatabase(database) as db:
        test = db.patch_set("test")
        test_names = db.images().query("split == 'test'")["name"].tolist()
    for network in ("detector", "segmentator"):
        run = settings(root / network, name=network)
        train_network(database, network, "same", run, **ARCHITECTURE)
        models[network] = run.out_path
        logs[(network, "same", 0)] = pd.read_csv(run.log_csv)
        model, _ = load_network(run.out_path, network)
        rows.append(patch_predictions(model, test, network, "same", 0))
    detector, _ = load_network(models["detector"], "detector")
    segmentator, _ = load_network(models["segmentator"], "segmentator")
    masks, scores, mammograms = {}, [], {}
    for mammogram in read_mammograms(raw, source, test_names):
        result = segment_mammogram(detector, segmentator, mammogram.image, 0.1, mammogram.name)
        scores.append({"convolution": "same", "seed": 0, "image": mammogram.name,
                       **score_image(result.mask, mammogram.mask, 0.1)})
        masks[f"mask_{mammogram.name}"] = np.packbits(result.mask)
        masks[f"shape_{mammogram.name}"] = np.asarray(result.mask.shape)
        mammograms[mammogram.name] = mammogram
    np.savez(root / "masks_same.npz", **masks)
    return {"raw": raw, "source": source, "database": database, "models": models, "logs": logs,
            "predictions": pd.concat(rows, ignore_index=True), "scores": pd.DataFrame(scores),
            "masks": {"same": root / "masks_same.npz"}, "mammograms": mammograms, "root": root}


def test_the_synthetic_figure(tiny_run):
    out = tiny_run["root"] / "synthetic.png"
    assert figures.plot_synthetic(tiny_run["raw"], out, examples=3, point_radius_px=2) == out
    assert is_png(out)
    with pytest.raises(DataError, match="synthetic truth"):
        figures.plot_synthetic(tiny_run["root"], out, examples=3, point_radius_px=2)


@pytest.fixture(scope="module")
def views(tiny_run):
    return figures.feature_views(tiny_run["models"], tiny_run["database"], tiny_run["predictions"], n_patches=30,
                                 perplexity=5, seed=0)


def test_the_feature_views_hold_every_misclassified_patch_and_are_seeded(tiny_run, views):
    assert set(views) == {"detector", "segmentator"}
    for view in views.values():
        assert view.convolution == "same" and view.pixels.shape == (30, SIZE, SIZE)
        assert len(view.labels) == 30 and view.embedding.shape == (30, 2) and view.features.shape == (30, 8)
        rows = tiny_run["predictions"][tiny_run["predictions"]["network"] == view.network].set_index("patch_id")
        assert (view.correct == 0).sum() == min(30, int((rows["correct"] == 0).sum()))  # every wrong one first
        np.testing.assert_array_equal(view.labels, rows.loc[view.patch_ids, "label"])  # aligned by patch id
    again = figures.feature_views({"detector": tiny_run["models"]["detector"]}, tiny_run["database"],
                                  tiny_run["predictions"], n_patches=30, perplexity=5, seed=0)
    np.testing.assert_array_equal(again["detector"].embedding, views["detector"].embedding)


def test_the_feature_views_refuse_several_seeds_predictions(tiny_run):
    twice = pd.concat([tiny_run["predictions"], tiny_run["predictions"].assign(seed=1)], ignore_index=True)
    with pytest.raises(DataError, match="one seed"):
        figures.feature_views(tiny_run["models"], tiny_run["database"], twice, n_patches=30, perplexity=5, seed=0)


def test_tsne_and_worst_pairs(tiny_run, views):
    out = tiny_run["root"] / "tsne.png"
    assert figures.plot_tsne(views, out) == out and is_png(out)
    outs = {n: tiny_run["root"] / f"worst_{n}.png" for n in views}
    figures.plot_worst_pairs(views, tiny_run["raw"], tiny_run["source"], 4, outs, tiny_run["database"])
    assert all(is_png(p) for p in outs.values())


def test_worst_pair_masks_are_cut_from_the_images_mask(tiny_run, views):
    view = views["segmentator"]
    indices = list(range(len(view.labels)))
    masks = figures.mask_patches(view, indices, tiny_run["raw"], tiny_run["source"], tiny_run["database"])
    assert set(masks) == set(indices) and all(m.shape == (SIZE, SIZE) for m in masks.values())
    # each cut mask gives back the class stored with the patch: it lies where the patch was cut
    assert [patch_class(masks[i]) for i in indices] == [int(c) for c in view.classes]


def test_training_curves(tiny_run):
    out = tiny_run["root"] / "curves.png"
    logs = {**tiny_run["logs"], **{(n, c, 1): log for (n, c, _), log in tiny_run["logs"].items()}}  # two seeds
    assert figures.plot_training_curves(logs, out) == out and is_png(out)
    with pytest.raises(DataError):
        figures.plot_training_curves({}, out)


# ---------------------------------------------------------------- Figs. 1 and 7


def deep_and_edge_pixels(mammogram, away_px: int = 12) -> tuple[tuple[int, int], tuple[int, int]]:
    """By rule: the breast pixel deepest inside, and the first breast pixel (raster order) 1 mm from the edge;
    both at least ``away_px`` from every true calcification and from the image's sides."""
    from scipy import ndimage as ndi

    from medrepro.studies.microcalc.patches import breast_mask

    distance = border_distance_mm(breast_mask(mammogram.image, mammogram.name), 0.1)
    clear = ndi.distance_transform_edt(~mammogram.mask) > away_px
    clear[:away_px], clear[-away_px:], clear[:, :away_px], clear[:, -away_px:] = False, False, False, False
    inside = np.where(clear & breast_mask(mammogram.image, mammogram.name), distance, -1)
    deep = np.unravel_index(int(np.argmax(inside)), inside.shape)
    edge = np.argwhere(clear & (np.abs(inside - 1.0) < 0.05))[0]
    return tuple(int(v) for v in deep), tuple(int(v) for v in edge)


def masks_npz(path, mammogram, spots) -> None:
    """A variant that finds every true calcification and false ones at ``spots`` (3 x 3 pixels each)."""
    mask = mammogram.mask | calcification_mask(mammogram.mask.shape, [(r - 1, c - 1, 3) for r, c in spots])
    np.savez(path, **{f"mask_{mammogram.name}": np.packbits(mask),
                      f"shape_{mammogram.name}": np.asarray(mask.shape)})


@pytest.fixture(scope="module")
def hand_masks(tiny_run):
    """Hand-built variants on the test image: 'inside' has one false detection deep in the breast, 'edge' one 1 mm
    from its edge as well."""
    from medrepro.studies.microcalc.scoring import score_image

    (name, mammogram), = tiny_run["mammograms"].items()
    deep, edge = deep_and_edge_pixels(mammogram)
    paths = {"inside": tiny_run["root"] / "masks_inside.npz", "edge": tiny_run["root"] / "masks_edge.npz"}
    masks_npz(paths["inside"], mammogram, [deep])
    masks_npz(paths["edge"], mammogram, [deep, edge])
    scores = pd.DataFrame([{"convolution": c, "seed": 0, "image": name,
                            **score_image(read_predicted_mask(p, name), mammogram.mask, 0.1)}
                           for c, p in paths.items()])
    return {"paths": paths, "scores": scores, "deep": deep, "edge": edge, "name": name}


def test_the_border_rule_on_an_image_picks_the_variant_with_a_false_detection_at_the_edge(tiny_run, hand_masks):
    found = figures.border_detections(hand_masks["scores"], hand_masks["paths"], tiny_run["raw"],
                                      tiny_run["source"], match_px=5)
    assert [(d.image, d.convolution, len(d.false), int(d.at_border.sum())) for d in found] == \
        [(hand_masks["name"], "inside", 1, 0), (hand_masks["name"], "edge", 2, 1)]
    case, at_border = choose_border_case(found)
    assert at_border and case.convolution == "edge"
    np.testing.assert_allclose(case.border, [hand_masks["edge"]])
    # without the variant at the edge: the most false detections anywhere
    case, at_border = choose_border_case(found[:1])
    assert not at_border and case.convolution == "inside"


def test_segmented_region_and_border_failures(tiny_run, hand_masks):
    scores = pd.concat([tiny_run["scores"], hand_masks["scores"]], ignore_index=True)
    masks = {**tiny_run["masks"], **hand_masks["paths"]}
    region, border = tiny_run["root"] / "region.png", tiny_run["root"] / "border.png"
    assert figures.plot_segmented_region(scores, masks, tiny_run["raw"], tiny_run["source"], SEGMENTATION,
                                         region) == region
    assert figures.plot_border_failures(scores, masks, tiny_run["raw"], tiny_run["source"], SEGMENTATION,
                                        border) == border
    assert is_png(region) and is_png(border)
    fallback = tiny_run["root"] / "border_fallback.png"
    figures.plot_border_failures(hand_masks["scores"].iloc[:1], {"inside": hand_masks["paths"]["inside"]},
                                 tiny_run["raw"], tiny_run["source"], SEGMENTATION, fallback)
    assert is_png(fallback)


def test_a_mask_of_other_raw_files_is_refused(tiny_run, tmp_path):
    name = next(iter(tiny_run["mammograms"]))
    np.savez(tmp_path / "bad.npz", **{f"mask_{name}": np.packbits(np.zeros((5, 5), bool)),
                                      f"shape_{name}": np.asarray((5, 5))})
    with pytest.raises(DataError, match="other raw files"):
        figures.plot_segmented_region(tiny_run["scores"], {"same": tmp_path / "bad.npz"}, tiny_run["raw"],
                                      tiny_run["source"], SEGMENTATION, tmp_path / "region.png")
