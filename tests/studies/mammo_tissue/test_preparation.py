"""Base images and samples: the breast found, the nipple found, the crop right-aligned on it; labels, splits by
patient and samples that never cross a split or touch an annotation."""

import numpy as np
import pandas as pd
import pytest

from medrepro.studies.mammo_tissue import preprocess, sampling


def half_ellipse(rows=200, cols=160, tip=(90, 120), chest_wall_left=True):
    """A breast-like mask: a half-ellipse on the chest wall with its tip (the nipple) at ``tip``."""
    r, c = np.mgrid[:rows, :cols]
    centre_row, depth = tip[0], tip[1]
    mask = ((r - centre_row) / 70.0) ** 2 + (c / depth) ** 2 <= 1.0
    return mask if chest_wall_left else mask[:, ::-1]


def test_the_nipple_is_the_outline_point_farthest_from_the_chest_wall():
    mask = half_ellipse(tip=(90, 120))
    assert preprocess.find_nipple(mask) == (90, 120)
    assert not preprocess.chest_wall_on_right(mask)
    assert preprocess.chest_wall_on_right(mask[:, ::-1])


def test_otsu_splits_a_bimodal_histogram_between_its_modes():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0.8, 0.1, 4000), rng.normal(3.2, 0.1, 6000)])
    assert 1.6 < preprocess.otsu_threshold(values) < 2.4  # the middle of the gap between the modes


def test_the_crop_is_flipped_to_the_chest_wall_on_the_left_and_right_aligned_on_the_nipple():
    mask = half_ellipse(tip=(90, 120), chest_wall_left=False)  # chest wall on the right: flipped first
    density = np.where(mask, 1.0, 3.5)
    density[5:15, 5:30] = 0.3  # a bright label off the breast: not the largest region
    placement = preprocess.place(density, 64)
    assert placement.flipped and placement.nipple == (90, 120)
    crop = preprocess.crop(density, placement, fill=3.6)
    assert crop.shape == (64, 64)
    assert crop[32, 63] == 1.0 and (crop[:, 63] == 1.0).sum() <= 3  # the nipple on the last column, middle row
    # a crop reaching past the image is filled
    wide = preprocess.crop(density, preprocess.Placement(False, -10, -10, 64, (0, 0)), fill=3.6)
    assert (wide[:10] == 3.6).all() and (wide[:, :10] == 3.6).all()


def test_labels_by_assessment_and_view_labels():
    assert [sampling.annotation_label(a) for a in range(6)] == ["unknown", "negative", *["positive"] * 4]
    assert sampling.view_label(["negative", "positive"]) == "positive"
    assert sampling.view_label(["unknown"]) is None and sampling.view_label([]) == "negative"


def test_no_negative_field_meets_an_annotation():
    blocked = np.zeros((100, 100), bool)
    blocked[40:50, 60:70] = True
    field = 16
    positions = sampling.negative_positions(blocked, stride=4, field=field)
    assert len(positions)
    half = field // 2
    for r, c in positions:
        window = blocked[max(r - half, 0):r + field - half, max(c - half, 0):c + field - half]
        assert not window.any(), (r, c)
    # and every grid position whose field is clear is kept
    free = [(r, c) for r in range(2, 100, 4) for c in range(2, 100, 4)
            if not blocked[max(r - half, 0):r + field - half, max(c - half, 0):c + field - half].any()]
    assert sorted(map(tuple, positions.tolist())) == sorted(free)


def fake_study(n_abnormal=12, n_normal=10):
    views, annotations = [], []
    for i in range(n_abnormal + n_normal):
        case = f"A-{i:04d}-1"
        for view in ("LEFT_CC", "LEFT_MLO", "RIGHT_CC", "RIGHT_MLO"):
            view_id = len(views)
            sick = i < n_abnormal and view.startswith("LEFT")
            views.append({"view_id": view_id, "case": case, "view": view, "projection": view.split("_")[1],
                          "label": "positive" if sick else "negative"})
            if sick:
                annotations.append({"view_id": view_id, "case": case, "number": 1, "label": "positive",
                                    "in_crop": True, "centre_row": 30.0, "centre_col": 30.0, "height": 10,
                                    "width": 12})
    return pd.DataFrame(views), pd.DataFrame(annotations)


def test_splits_are_by_patient_and_held_out_sets_are_balanced():
    views, annotations = fake_study()
    held = {"test": sampling.HeldOut(4, 3), "val": sampling.HeldOut(2, 1)}
    split = sampling.split_cases(views, annotations, held["test"], held["val"], seed=0)
    assert set(split) == set(views["case"])
    blocked = np.zeros((len(views), 64, 64), bool)
    blocked[:, 20:40, 20:40] = True
    samples = sampling.tissue_samples(views, annotations, blocked, split, negative_stride=8, field=16,
                                      max_positive_extent=11, held_out=held, seed=0)
    # every sample's split is its case's split: no image's patches in two splits
    assert (samples["split"] == samples["case"].map(split)).all()
    assert samples.groupby("view_id")["split"].nunique().max() == 1
    for name in ("val", "test"):
        counts = samples[samples["split"] == name]["label"].value_counts()
        assert counts[1] == counts[0] == held[name].patches
    # training positives larger than max_positive_extent are left out (extent 12 > 11), held-out ones kept
    assert not ((samples["split"] == "train") & (samples["label"] == 1)).any()
    full = sampling.mammograms(views, split, held, seed=0)
    for name in ("val", "test"):
        counts = full[full["split"] == name]["label"].value_counts()
        assert counts[1] == counts[0] == held[name].mammograms
    assert set(full["view_id"]) <= set(views.loc[views["projection"] == "CC", "view_id"])
