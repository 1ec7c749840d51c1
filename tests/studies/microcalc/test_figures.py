"""The figures' choice rules on hand-built arrays and tables, and every figure drawn from a tiny synthetic INbreast
with narrow networks trained for a few steps."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import pytest

from medrepro.studies.microcalc import figures
from medrepro.studies.microcalc.figures import (
    FeatureView, border_false_positives, choose_patches, choose_region_image, crop_box, densest, worst_pairs)
from support import training as support_training
from support.smoke import PNG_SIGNATURE

pytestmark = pytest.mark.usefixtures("restore_thread_count")


# ---------------------------------------------------------------- rules


def test_a_crop_is_moved_inside_the_image_and_shrinks_to_fit():
    assert crop_box((50, 50), 20, (100, 80)) == (slice(40, 60), slice(40, 60))
    assert crop_box((2, 79), 20, (100, 80)) == (slice(0, 20), slice(60, 80))
    assert crop_box((5, 5), 200, (30, 40)) == (slice(0, 30), slice(0, 40))


def test_the_region_image_has_the_most_calcifications_found_ties_by_name():
    scores = pd.DataFrame({"image": ["b", "a", "b", "a", "c"],
                           "convolution": ["same", "same", "valid", "valid", "same"],
                           "detected_calcifications": [3, 2, 1, 2, 4]})
    assert choose_region_image(scores) == "a"  # a: 4, b: 4, c: 4 -> the first name
    assert choose_region_image(scores.assign(detected_calcifications=[3, 2, 2, 2, 4])) == "b"


def test_border_false_positives_keep_unmatched_detections_near_the_edge_only():
    breast = np.zeros((60, 60), dtype=bool)
    breast[:, :40] = True  # the edge at column 40
    truth = np.zeros_like(breast)
    truth[10, 38] = True
    predicted = np.zeros_like(breast)
    predicted[10, 38] = True  # matches the true one: not false
    predicted[30, 38] = True  # false, 2 pixels from the edge
    predicted[30, 5] = True   # false, deep inside
    found = border_false_positives(predicted, truth, breast, pixel_mm=0.5, match_px=2, border_mm=2.0)
    np.testing.assert_allclose(found, [[30, 38]])
    assert len(border_false_positives(predicted, truth, breast, 0.05, 2, border_mm=0.01)) == 0


def test_densest_point_has_the_most_neighbours():
    points = np.array([[0, 0], [50, 50], [51, 52], [49, 48], [90, 10]], dtype=float)
    assert densest(points, side=10) == (50.0, 50.0)


def test_every_misclassified_patch_is_chosen_first():
    correct = np.array([1, 0, 1, 1, 0, 1, 1, 0])
    labels = np.array([1, 1, 0, 0, 0, 1, 0, 1])
    probability = np.array([0.9, 0.1, 0.2, 0.3, 0.8, 0.7, 0.1, 0.4])
    chosen = choose_patches(correct, probability, labels, 5, seed=0)
    assert {1, 4, 7} <= set(chosen) and len(chosen) == 5
    # too many wrong ones: the most confidently wrong (patch 1: P(wrong) 0.9, then 4: 0.8)
    assert list(choose_patches(correct, probability, labels, 2, seed=0)) == [1, 4]


def test_worst_pairs_take_the_nearest_correct_patch_of_the_other_label():
    features = np.array([[0.0, 0], [1, 0], [5, 5], [0.5, 0], [9, 9]])
    view = FeatureView("detector", "same", np.arange(5), np.zeros(5), np.zeros(5), np.zeros(5),
                       classes=np.array([3, 4, 4, 1, 4]), labels=np.array([1, 0, 0, 1, 0]),
                       probability=np.array([0.05, 0.2, 0.1, 0.4, 0.3]), correct=np.array([0, 1, 1, 0, 1]),
                       pixels=np.zeros((5, 3, 3)), features=features, embedding=np.zeros((5, 2)))
    # patch 0 is wrong with P(wrong) 0.95, patch 3 with 0.6; their nearest correct negatives are 1 and 1
    assert worst_pairs(view, 5) == [(0, 1), (3, 1)]
    assert worst_pairs(view, 1) == [(0, 1)]


# ---------------------------------------------------------------- every figure on a tiny run


SIZE = 11
ARCHITECTURE = dict(widths=(4, 4, 8, 8, 8, 8), hidden=8, dropout=0.5)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A synthetic INbreast of four images at 0.1 mm, its patch database, both networks (same) trained for a few
    steps, their test predictions and the whole-mammogram masks of the test image."""
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
    generate_inbreast(raw, n_images=4, seed=0, image_size=(220, 200), normal_fraction=0.0)
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
    masks, scores = {}, []
    for mammogram in read_mammograms(raw, source, test_names):
        result = segment_mammogram(detector, segmentator, mammogram.image, 0.1, mammogram.name)
        scores.append({"convolution": "same", "seed": 0, "image": mammogram.name,
                       **score_image(result.mask, mammogram.mask, 0.1)})
        masks[f"mask_{mammogram.name}"] = np.packbits(result.mask)
        masks[f"shape_{mammogram.name}"] = np.asarray(result.mask.shape)
    np.savez(root / "masks_same.npz", **masks)
    return {"raw": raw, "source": source, "database": database, "models": models, "logs": logs,
            "predictions": pd.concat(rows, ignore_index=True), "scores": pd.DataFrame(scores),
            "masks": {"same": root / "masks_same.npz"}, "root": root}


def is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_SIGNATURE


def test_the_synthetic_figure(tiny_run):
    out = tiny_run["root"] / "synthetic.png"
    figures.plot_synthetic(tiny_run["raw"], out, examples=3, point_radius_px=2)
    assert is_png(out)


def test_tsne_and_worst_pairs(tiny_run):
    views = figures.feature_views(tiny_run["models"], tiny_run["database"], tiny_run["predictions"], n_patches=30,
                                  perplexity=5, seed=0)
    assert set(views) == {"detector", "segmentator"}
    for view in views.values():
        assert len(view.labels) == 30 and view.embedding.shape == (30, 2) and view.features.shape == (30, 8)
        rows = tiny_run["predictions"][tiny_run["predictions"]["network"] == view.network]
        assert (view.correct == 0).sum() == min(30, int((rows["correct"] == 0).sum()))  # every wrong one first
    out = tiny_run["root"] / "tsne.png"
    figures.plot_tsne(views, out)
    outs = {n: tiny_run["root"] / f"worst_{n}.png" for n in views}
    figures.plot_worst_pairs(views, tiny_run["raw"], tiny_run["source"], 2, outs, tiny_run["database"])
    assert is_png(out) and all(is_png(p) for p in outs.values())


def test_training_curves(tiny_run):
    out = tiny_run["root"] / "curves.png"
    figures.plot_training_curves(tiny_run["logs"], out)
    assert is_png(out)


def test_segmented_region_and_border_failures(tiny_run):
    settings = {"cluster": {"side_mm": 10, "more_than": 5}, "match_px": 5}
    region, border = tiny_run["root"] / "region.png", tiny_run["root"] / "border.png"
    figures.plot_segmented_region(tiny_run["scores"], tiny_run["masks"], tiny_run["raw"], tiny_run["source"],
                                  settings, region)
    figures.plot_border_failures(tiny_run["scores"], tiny_run["masks"], tiny_run["raw"], tiny_run["source"],
                                 settings, border)
    assert is_png(region) and is_png(border)
