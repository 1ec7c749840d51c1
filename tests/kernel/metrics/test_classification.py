"""Binary classification metrics against scikit-learn on the same arrays, with ties and degenerate sets."""

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from medrepro.metrics.classification import (
    auc_contributions, confusion_percentages, roc_auc, roc_curve, stratified_bootstrap)


def cases(seed: int, n: int = 200, ties: bool = False):
    rng = np.random.default_rng(seed)
    labels = (rng.uniform(size=n) < 0.4).astype(int)
    scores = rng.normal(labels * 1.0, 1.0)
    if ties:
        scores = np.round(scores, 1)  # many tied scores, across classes too
    return labels, scores


@pytest.mark.parametrize("seed, ties", [(0, False), (1, True), (2, True)])
def test_auc_equals_scikit_learn_and_the_area_under_the_curve(seed, ties):
    labels, scores = cases(seed, ties=ties)
    auc = roc_auc(labels, scores)
    assert auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    fpr, tpr, _ = roc_curve(labels, scores)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auc, abs=1e-12)
    sk_fpr, sk_tpr, sk_thresholds = sk_roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)


def test_auc_of_perfect_reversed_and_constant_scores():
    labels = np.array([0, 0, 1, 1])
    assert roc_auc(labels, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc(labels, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert roc_auc(labels, [0.5, 0.5, 0.5, 0.5]) == 0.5


def test_a_set_without_both_classes_has_no_roc():
    with pytest.raises(ValueError, match="positive and negative"):
        roc_auc([1, 1, 1], [0.2, 0.4, 0.9])
    with pytest.raises(ValueError, match="0 or 1"):
        roc_auc([0, 2], [0.1, 0.2])


@pytest.mark.parametrize("ties", [False, True])
def test_auc_contributions_average_to_the_auc_over_each_class_and_all(ties):
    labels, scores = cases(3, ties=ties)
    parts = auc_contributions(labels, scores)
    auc = roc_auc(labels, scores)
    assert parts[labels == 1].mean() == pytest.approx(auc) and parts[labels == 0].mean() == pytest.approx(auc)
    assert parts.mean() == pytest.approx(auc)
    # one positive by hand: the share of negatives below it, a tie counting one half
    labels, scores = np.array([1, 0, 0, 0, 0]), np.array([0.5, 0.1, 0.5, 0.7, 0.2])
    assert auc_contributions(labels, scores)[0] == pytest.approx((2 + 0.5) / 4)


def test_confusion_percentages_match_scikit_learn():
    labels, scores = cases(4)
    out = confusion_percentages(labels, scores, threshold=0.5)
    tn, fp, fn, tp = confusion_matrix(labels, scores >= 0.5).ravel()
    n = len(labels)
    assert out == pytest.approx({"tp": 100 * tp / n, "fp": 100 * fp / n, "tn": 100 * tn / n, "fn": 100 * fn / n,
                                 "total_error": 100 * (fp + fn) / n})
    assert out["tp"] + out["fp"] + out["tn"] + out["fn"] == pytest.approx(100)


def test_bootstrap_interval_brackets_the_auc_and_narrows_with_more_cases():
    widths = []
    for n in (60, 600):
        labels, scores = cases(5, n=n)
        low, high = stratified_bootstrap(lambda i: roc_auc(labels[i], scores[i]), labels, n_boot=300, seed=0)
        assert low < roc_auc(labels, scores) < high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2
    # the same seed gives the same interval
    labels, scores = cases(5, n=60)
    again = [stratified_bootstrap(lambda i: roc_auc(labels[i], scores[i]), labels, 100, seed=7) for _ in range(2)]
    assert again[0] == again[1]
