"""Cardiomegaly classification: cross-validated SVMs, the CTR rule, autoencoder codes, the CTR itself."""

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from medrepro.studies.chest.cxr14.cardiac import cardiothoracic_ratio, cardiothoracic_ratios
from medrepro.studies.chest.cxr14.classify import (
    autoencoder_codes,
    build_pipeline,
    cross_validate,
    ctr_threshold_accuracy,
)
from medrepro.errors import ConfigError
from medrepro.nn.modules import freeze
from medrepro.studies.chest.networks import MaskAutoencoder
from medrepro.spatial.warp import to_onehot


def two_clusters(n: int, dims: int, separation: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    features = rng.normal(size=(n, dims))
    features[:, :3] += separation * y[:, None]
    return features, y


# --- cross_validate -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("representation, dims", [("pca32", 64), ("ae32", 32)])
def test_separable_features_are_classified_perfectly(representation, dims):
    features, y = two_clusters(200, dims, separation=8.0, seed=0)
    result = cross_validate(features, y, folds=20, seed=0, representation=representation)
    assert result["folds"] == 20 and len(result["fold_accuracies"]) == 20
    assert result["accuracy_mean"] >= 0.99
    assert result["accuracy_sd"] == pytest.approx(np.std(result["fold_accuracies"], ddof=1))


@pytest.mark.parametrize("representation", ["pca32", "ae32"])
def test_random_labels_give_chance_accuracy(representation):
    rng = np.random.default_rng(1)
    features = rng.normal(size=(400, 40))
    y = rng.permutation(np.repeat([0, 1], 200))
    result = cross_validate(features, y, folds=10, seed=0, representation=representation)
    assert abs(result["accuracy_mean"] - 0.5) < 0.08


def test_pca_and_scaling_are_fitted_on_the_training_folds_only():
    features, y = two_clusters(120, 48, separation=2.0, seed=2)
    features[:6] += 50.0  # outliers that would shift a PCA fitted on all rows
    result = cross_validate(features, y, folds=5, seed=3, return_estimators=True)
    folds = list(StratifiedKFold(5, shuffle=True, random_state=3).split(features, y))
    for model, (train, test) in zip(result["estimators"], folds):
        assert list(model.named_steps) == ["pca", "scale", "svm"]
        pca, scale = model.named_steps["pca"], model.named_steps["scale"]
        assert pca.n_components_ == 32 and pca.n_samples_ == len(train)
        np.testing.assert_allclose(pca.mean_, features[train].mean(axis=0))
        assert not np.allclose(pca.mean_, features.mean(axis=0))
        np.testing.assert_allclose(scale.mean_, pca.transform(features[train]).mean(axis=0), atol=1e-10)
    # the same accuracies, computed by hand fold by fold
    expected = []
    for train, test in folds:
        pca = PCA(32, random_state=3).fit(features[train])
        scale = StandardScaler().fit(pca.transform(features[train]))
        svm = SVC().fit(scale.transform(pca.transform(features[train])), y[train])
        expected.append(np.mean(svm.predict(scale.transform(pca.transform(features[test]))) == y[test]))
    np.testing.assert_allclose(result["fold_accuracies"], expected)


def test_ae32_pipeline_has_no_pca_and_options_reach_the_svm():
    model = build_pipeline("ae32", C=3.0, gamma=0.1)
    assert list(model.named_steps) == ["scale", "svm"]
    assert model.named_steps["svm"].C == 3.0 and model.named_steps["svm"].gamma == 0.1
    assert model.named_steps["svm"].kernel == "rbf"


def test_too_few_class_members_is_a_config_error():
    features, y = two_clusters(40, 32, separation=2.0, seed=4)
    y = np.r_[np.ones(5, int), np.zeros(35, int)]
    with pytest.raises(ConfigError, match=r"20 members.*0: 35, 1: 5"):
        cross_validate(features, y, folds=20)
    with pytest.raises(ConfigError, match=r"0: 35, 1: 5"):
        ctr_threshold_accuracy(np.full(40, 0.4), y, folds=20)
    with pytest.raises(ConfigError, match="two classes"):
        cross_validate(features, np.zeros(40, int), folds=2)


def test_bad_representation_or_too_few_features():
    features, y = two_clusters(40, 16, separation=2.0, seed=5)
    with pytest.raises(ConfigError, match="representation"):
        cross_validate(features, y, folds=2, representation="pca16")
    with pytest.raises(ConfigError, match="32 components"):
        cross_validate(features, y, folds=2, representation="pca32")


# --- ctr_threshold_accuracy ---------------------------------------------------------------------------------


def test_ctr_rule_scored_on_the_cross_validation_folds():
    rng = np.random.default_rng(6)
    y = rng.permutation(np.repeat([0, 1], 30))
    ctr = np.where(y == 1, rng.normal(0.56, 0.05, 60), rng.normal(0.45, 0.05, 60))
    ctr[[0, 7, 33]] = np.nan
    result = ctr_threshold_accuracy(ctr, y, folds=6, seed=11, threshold=0.5)
    expected = []
    for _, test in StratifiedKFold(6, shuffle=True, random_state=11).split(ctr[:, None], y):
        right = 0
        for i in test:
            if np.isnan(ctr[i]):
                continue  # no measurement: wrong whatever the label
            right += int((ctr[i] > 0.5) == (y[i] == 1))
        expected.append(right / len(test))
    np.testing.assert_allclose(result["fold_accuracies"], expected)
    assert result["accuracy_mean"] == pytest.approx(np.mean(expected))
    assert result["accuracy_sd"] == pytest.approx(np.std(expected, ddof=1))
    assert result["folds"] == 6


def test_ctr_rule_on_a_hand_made_case():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    ctr = np.array([0.40, 0.50, np.nan, 0.60, 0.55, 0.50, np.nan, 0.70])
    # right: 0.40->0, 0.50->0 (not > 0.5), 0.55->1, 0.70->1; wrong: both NaN, 0.60 on a healthy, 0.50 on a sick
    result = ctr_threshold_accuracy(ctr, y, folds=2, seed=0)
    assert np.mean(result["fold_accuracies"]) == pytest.approx(4 / 8)
    assert ctr_threshold_accuracy(ctr, y, folds=2, seed=0, threshold=0.45)["accuracy_mean"] == pytest.approx(4 / 8)
    with pytest.raises(ValueError):
        ctr_threshold_accuracy(ctr, y + 1, folds=2)


# --- autoencoder_codes --------------------------------------------------------------------------------------


def test_autoencoder_codes_match_the_encoder_on_one_hot_masks():
    torch.manual_seed(0)
    encoder = freeze(MaskAutoencoder(4, 16, code_dim=32))
    masks = np.random.default_rng(7).integers(0, 4, (10, 16, 16)).astype(np.uint8)
    codes = autoencoder_codes(encoder, masks, 4, batch_size=3)
    with torch.no_grad():
        expected = encoder.encode(to_onehot(torch.from_numpy(masks.astype(np.int64)), 4)).numpy()
    assert codes.shape == (10, 32) and codes.dtype == np.float32
    np.testing.assert_allclose(codes, expected, rtol=1e-5, atol=1e-6)


def test_autoencoder_codes_need_eval_mode_and_matching_classes():
    encoder = MaskAutoencoder(4, 16)
    masks = np.zeros((2, 16, 16), np.uint8)
    with pytest.raises(ValueError, match="eval mode"):
        autoencoder_codes(encoder, masks, 4)
    with pytest.raises(ValueError, match="4 classes"):
        autoencoder_codes(freeze(encoder), masks, 3)


# --- cardiothoracic ratio -----------------------------------------------------------------------------------


def chest(heart_cols=(20, 36), right_lung_cols=(5, 26), left_lung_cols=(38, 59)) -> np.ndarray:
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[10:50, slice(*right_lung_cols)] = 1
    mask[10:50, slice(*left_lung_cols)] = 2
    mask[30:48, slice(*heart_cols)] = 3
    return mask


def test_ctr_of_rectangles():
    assert cardiothoracic_ratio(chest()) == pytest.approx(16 / 54)
    assert cardiothoracic_ratio(chest(heart_cols=(16, 46))) == pytest.approx(30 / 54)
    assert cardiothoracic_ratio(chest(right_lung_cols=(10, 26))) == pytest.approx(16 / 49)


def test_ctr_takes_the_extreme_heart_borders_even_on_different_rows():
    mask = chest()
    mask[30:48, 20:36] = 0
    mask[30:38, 18:30] = 3  # right border at column 18, upper rows
    mask[38:48, 26:41] = 3  # left border at column 40, lower rows
    assert cardiothoracic_ratio(mask) == pytest.approx((40 - 18 + 1) / 54)


def test_ctr_is_nan_without_heart_or_lungs():
    mask = chest()
    assert np.isnan(cardiothoracic_ratio(np.where(mask == 3, 0, mask)))
    assert np.isnan(cardiothoracic_ratio(np.where(mask == 2, 0, mask)))
    assert np.isnan(cardiothoracic_ratio(np.where(mask == 3, 3, 0)))
    assert np.isnan(cardiothoracic_ratio(np.zeros((8, 8), np.uint8)))


def test_ctr_stack_matches_single_masks():
    mask = chest()
    stack = np.stack([mask, chest(heart_cols=(10, 50)), np.where(mask == 3, 0, mask), np.zeros_like(mask)])
    ratios = cardiothoracic_ratios(stack)
    assert ratios.shape == (4,)
    np.testing.assert_array_equal(ratios, [cardiothoracic_ratio(m) for m in stack])
    assert ratios[1] == pytest.approx(40 / 54)
