"""Table 1 and the image table from hand-built predictions and scores, the paper's constants against its own
formula, the claims, and the mammograms every step reads."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from medrepro.report.claims import judge_claims
from medrepro.studies.microcalc.claims import claim_values, study_claims
from medrepro.studies.microcalc.tables import (
    PAPER_PATCH_ERRORS, PATCH_COLUMNS, images_latex, images_markdown, images_table, patch_errors_latex,
    patch_errors_markdown, patch_errors_table)


def predictions(errors: dict[tuple[str, str], dict[int, float]], counts=(30, 10, 10, 10), seeds=(0, 1)):
    """Per (network, convolution) and seed, patches of each class with the given share wrong (the first ones)."""
    rows, patch = [], 0
    for (network, convolution), shares in errors.items():
        for seed in seeds:
            patch = 0
            for cls, n in zip((1, 2, 3, 4), counts):
                wrong = int(round(shares[cls] * n))
                for i in range(n):
                    rows.append({"network": network, "convolution": convolution, "seed": seed, "patch_id": patch,
                                 "image_id": 1, "class": cls, "label": int(cls == 1), "probability": 0.5,
                                 "correct": int(i >= wrong), "source": f"{network}_{convolution}_{seed}.csv"})
                    patch += 1
    return pd.DataFrame(rows)


def test_the_papers_overall_accuracies_follow_from_its_class_errors_under_the_half_c1_mix():
    for network_convolution, (c1, c2, c3, c4, overall) in PAPER_PATCH_ERRORS.items():
        implied = 0.5 * (100 - c1) + ((100 - c2) + (100 - c3) + (100 - c4)) / 6
        assert implied == pytest.approx(overall, abs=0.01), network_convolution


def test_errors_per_class_overall_and_equal_weight_accuracy():
    frame = predictions({("detector", "same"): {1: 0.1, 2: 0.2, 3: 0.5, 4: 0.0},
                         ("detector", "valid"): {1: 0.2, 2: 0.2, 3: 0.6, 4: 0.1}})
    table = patch_errors_table(frame)
    assert list(table.columns[:len(PATCH_COLUMNS)]) == PATCH_COLUMNS
    assert list(table["convolution"]) == ["valid", "same"]  # the paper's row order
    same = table.set_index("convolution").loc["same"]
    assert same[["c1_error", "c2_error", "c3_error", "c4_error"]].tolist() == pytest.approx([10, 20, 50, 0])
    # overall: the share of all 60 patches right, (27 + 8 + 5 + 10) / 60
    assert same["overall_accuracy"] == pytest.approx(100 * 50 / 60)
    assert same["equal_weight_accuracy"] == pytest.approx(100 - (10 + 20 + 50 + 0) / 4)
    assert same[["n_c1", "n_c2", "n_c3", "n_c4"]].tolist() == [30, 10, 10, 10]
    assert same["n_seeds"] == 2 and same["overall_accuracy_seed_sd"] == pytest.approx(0.0)
    assert same["paper_c3_error"] == 7.84 and same["paper_overall_accuracy"] == 98.22
    markdown, latex = patch_errors_markdown(table), patch_errors_latex(table)
    assert "| Detector | same | 10.00 (0.09) | 20.00 (0.47) | 50.00 (7.84) | 0.00 (2.09) | 83.33 (98.22) |" in markdown
    assert r"\begin{tabular}{llrrrrr}" in latex and "83.33 (98.22)" in latex


def test_seed_means_of_the_per_seed_errors():
    a = predictions({("segmentator", "same"): {1: 0.1, 2: 0.3, 3: 0.0, 4: 0.0}}, seeds=(0,))
    b = predictions({("segmentator", "same"): {1: 0.3, 2: 0.5, 3: 0.0, 4: 0.0}}, seeds=(1,))
    table = patch_errors_table(pd.concat([a, b]))
    assert table["c1_error"].iloc[0] == pytest.approx(20.0) and table["c2_error"].iloc[0] == pytest.approx(40.0)
    assert table["overall_accuracy_seed_sd"].iloc[0] > 0


def score_rows(convolution, seed, dice, detected, true, false_positives, seconds):
    return {"convolution": convolution, "seed": seed, "image": f"im{dice}", "digital": 1, "dice": dice,
            "true_calcifications": true, "predicted_calcifications": detected + false_positives,
            "detected_calcifications": detected, "sensitivity": detected / true if true else np.nan,
            "false_positives": false_positives, "true_clusters": 1, "predicted_clusters": 1,
            "detected_clusters": 1, "cluster_sensitivity": 1.0, "false_positive_clusters": 0, "seconds": seconds}


def test_image_table_pools_sensitivity_over_images_and_averages_seeds():
    scores = pd.DataFrame([
        score_rows("same", 0, 0.5, 3, 4, 2, 10.0), score_rows("same", 0, 0.3, 1, 6, 0, 12.0),
        score_rows("same", 1, 0.4, 4, 4, 1, 11.0), score_rows("same", 1, 0.2, 2, 6, 3, 13.0),
        score_rows("valid", 0, 0.1, 1, 10, 5, 1.0), score_rows("valid", 1, 0.1, 1, 10, 5, 1.0),
    ])
    table = images_table(scores).set_index("convolution")
    assert list(table.index) == ["valid", "same"]
    # pooled: seed 0 (3 + 1) / 10, seed 1 (4 + 2) / 10, mean 0.5
    assert table.loc["same", "sensitivity"] == pytest.approx(0.5)
    assert table.loc["same", "dice"] == pytest.approx((0.4 + 0.3) / 2)
    assert table.loc["same", "false_positives_per_image"] == pytest.approx(1.5)
    assert table.loc["same", "seconds_per_mammogram"] == pytest.approx(11.5)
    assert table.loc["same", "n_seeds"] == 2 and table.loc["same", "paper_seconds_per_mammogram"] == 20.0
    assert "Seconds / mammogram" in images_markdown(table.reset_index())
    assert "tab:microcalc-images" in images_latex(table.reset_index())


def test_claims_on_predictions_where_the_papers_orderings_hold():
    frame = pd.concat([
        predictions({("detector", "same"): {1: 0.0, 2: 0.1, 3: 0.5, 4: 0.1},
                     ("detector", "valid"): {1: 0.2, 2: 0.3, 3: 0.8, 4: 0.2},
                     ("segmentator", "same"): {1: 0.1, 2: 0.6, 3: 0.0, 4: 0.0},
                     ("segmentator", "valid"): {1: 0.1, 2: 0.7, 3: 0.0, 4: 0.1}},
                    counts=(60, 20, 20, 20), seeds=(0, 1, 2)),
    ], ignore_index=True)
    claims = study_claims(frame)
    labels = [c.label for c in claims]
    assert labels == ["detector: same > valid (overall accuracy)", "detector (valid): C3 the hardest class",
                      "detector (same): C3 the hardest class", "segmentator: same > valid (overall accuracy)",
                      "segmentator (valid): C2 the hardest class", "segmentator (same): C2 the hardest class"]
    table = judge_claims(claims, claim_values(frame)).set_index("claim")
    assert table.loc["detector: same > valid (overall accuracy)", "verdict"] == "holds"
    assert table.loc["detector (valid): C3 the hardest class", "verdict"] == "holds"
    assert table.loc["segmentator (same): C2 the hardest class", "verdict"] == "holds"
    # the same patches wrong in both segmentator variants, but for C2 and C4: same is better by few patches
    assert table.loc["segmentator: same > valid (overall accuracy)", "holds_in_seeds"] == 3


def test_claims_only_for_variants_that_ran():
    frame = predictions({("detector", "same"): {1: 0.0, 2: 0.1, 3: 0.5, 4: 0.1}})
    assert [c.label for c in study_claims(frame)] == ["detector (same): C3 the hardest class"]


# ---------------------------------------------------------------- the mammograms every step reads


@pytest.fixture(scope="module")
def tiny_inbreast(tmp_path_factory):
    from medrepro.studies.microcalc.synthetic import generate_inbreast

    root = tmp_path_factory.mktemp("inbreast") / "INbreast"
    generate_inbreast(root, n_images=3, seed=0, image_size=(220, 200), normal_fraction=0.0)
    return root


def test_mammograms_are_resampled_scaled_and_hashed(tiny_inbreast):
    from medrepro.studies.microcalc.mammograms import Source, image_names, read_mammograms
    from medrepro.studies.microcalc.readers import inbreast

    names = image_names(tiny_inbreast, Source())
    assert len(names) == 3
    first = next(read_mammograms(tiny_inbreast, Source(pixel_mm=0.05), names[:1]))
    record = inbreast.read_inbreast_image(inbreast.index_inbreast(tiny_inbreast)[0])
    assert first.name == record.name and first.image.shape == (440, 400)  # 0.1 mm -> 0.05 mm
    assert first.image.dtype == np.float32 and 0 <= first.image.min() and first.image.max() <= 1
    assert first.mask.shape == first.image.shape and first.mask.any()
    assert first.sha256 == hashlib.sha256(open(first.source, "rb").read()).hexdigest()
    assert first.mask_source.endswith(".xml") and first.digital == (record.acquisition == "digital")
    # the database stores the paths below the dataset's folder: the same bytes wherever a run keeps its data
    assert first.stored_path(first.source) == f"AllDICOMs/{record.sources[0].name}"
    assert first.stored_path(first.mask_source) == f"AllXML/{first.name}.xml"
    native = next(read_mammograms(tiny_inbreast, Source(pixel_mm=0.1), names[:1]))
    np.testing.assert_allclose(native.image, record.image / record.max_value, rtol=1e-6)


def test_asking_for_an_image_the_source_lacks_names_it(tiny_inbreast):
    from medrepro.errors import DataError
    from medrepro.studies.microcalc.mammograms import Source, read_mammograms

    with pytest.raises(DataError, match="no image named 99999999"):
        list(read_mammograms(tiny_inbreast, Source(), ["99999999"]))


def test_patch_predictions_and_first_fully_connected_features():
    import torch

    from medrepro.studies.microcalc.evaluation import PREDICTION_COLUMNS, fc_features, patch_predictions
    from medrepro.studies.microcalc.networks import Segmentator
    from medrepro.studies.microcalc.patchdb import PatchSet

    torch.manual_seed(0)
    model = Segmentator(49, "same", widths=(4,) * 6, hidden=8).eval()
    rng = np.random.default_rng(0)
    classes = np.array([1, 2, 3, 4, 1])
    patches = PatchSet(rng.random((5, 1, 49, 49), dtype=np.float32), classes, (classes != 4).astype(int),
                       (classes == 1).astype(int), np.arange(10, 15), np.full(5, 3), np.arange(5), np.arange(5))
    table = patch_predictions(model, patches, "segmentator", "same", 7)
    assert list(table.columns) == PREDICTION_COLUMNS and (table["seed"] == 7).all()
    assert table["label"].tolist() == [1, 0, 0, 0, 1] and table["patch_id"].tolist() == [10, 11, 12, 13, 14]
    assert ((table["probability"] > 0.5) == (table["label"] == 1)).tolist() == table["correct"].astype(bool).tolist()
    features = fc_features(model, patches.pixels, batch_size=2)
    with torch.no_grad():
        x = model.features(torch.from_numpy(patches.pixels))
        expected = torch.relu(model.classifier[2](model.classifier[1](x.flatten(1)))).numpy()
    assert features.shape == (5, 8)
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="eval mode"):
        fc_features(model.train(), patches.pixels)
