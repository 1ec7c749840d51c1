"""Binary classification: ROC, AUC, per-case AUC contributions, confusion percentages, bootstrap intervals.

Labels are 0/1, scores any real numbers, higher meaning more likely positive. The AUC is the Mann-Whitney
statistic, ties counting one half, so it equals ``sklearn.metrics.roc_auc_score`` and the area under
:func:`roc_curve` (tests check both). A set without both classes has no AUC: a ValueError says so.

Claims judge orderings over cases (:mod:`medrepro.report.claims`); the AUC is no per-case value, but it is the
mean of :func:`auc_contributions`: for a positive case the share of negatives it outscores, for a negative one
the share of positives that outscore it (ties one half); the positives' mean and the negatives' mean are each the
AUC, so the mean over all cases is too.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def _checked(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} must be equal-length vectors")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    labels = labels.astype(bool)
    if labels.all() or not labels.any():
        raise ValueError("the ROC needs positive and negative cases")
    return labels, scores


def _midranks(scores: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their mean rank."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(scores)]])
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end + 1) / 2
    return ranks


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve (Mann-Whitney U / (n_pos n_neg), ties one half)."""
    labels, scores = _checked(labels, scores)
    ranks = _midranks(scores)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc_contributions(labels, scores) -> np.ndarray:
    """Per case: a positive's share of negatives scored below it, a negative's share of positives scored above it
    (ties one half). The mean over the positives, over the negatives and over all cases is the AUC."""
    labels, scores = _checked(labels, scores)
    positives, negatives = scores[labels], scores[~labels]
    sorted_neg, sorted_pos = np.sort(negatives), np.sort(positives)
    out = np.empty(len(scores), dtype=np.float64)
    below = np.searchsorted(sorted_neg, positives, "left")
    tied = np.searchsorted(sorted_neg, positives, "right") - below
    out[labels] = (below + tied / 2) / len(negatives)
    above = len(positives) - np.searchsorted(sorted_pos, negatives, "right")
    tied = np.searchsorted(sorted_pos, negatives, "right") - np.searchsorted(sorted_pos, negatives, "left")
    out[~labels] = (above + tied / 2) / len(positives)
    return out


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate, threshold) at every distinct score, from (0, 0) to (1, 1): a
    case is called positive when its score is at least the threshold (the first threshold is +inf)."""
    labels, scores = _checked(labels, scores)
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tp, fp = np.cumsum(labels)[last], np.cumsum(~labels)[last]
    fpr = np.r_[0.0, fp / (~labels).sum()]
    tpr = np.r_[0.0, tp / labels.sum()]
    return fpr, tpr, np.r_[np.inf, scores[last]]


def confusion_percentages(labels, scores, threshold: float = 0.5) -> dict[str, float]:
    """TP, FP, TN, FN and their total error, each in percent of all cases (score >= threshold: positive)."""
    labels, scores = _checked(labels, scores)
    called = scores >= threshold
    n = len(labels)
    out = {"tp": (called & labels).sum(), "fp": (called & ~labels).sum(), "tn": (~called & ~labels).sum(),
           "fn": (~called & labels).sum()}
    out = {k: 100.0 * float(v) / n for k, v in out.items()}
    out["total_error"] = out["fp"] + out["fn"]
    return out


def stratified_bootstrap(statistic: Callable[[np.ndarray], float], labels, n_boot: int, seed: int,
                         level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of ``statistic(index)`` over ``n_boot`` resamples of the cases, positives and negatives
    each resampled with replacement within their class (so every resample has both)."""
    labels = np.asarray(labels).astype(bool)
    positive, negative = np.flatnonzero(labels), np.flatnonzero(~labels)
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot, dtype=np.float64)
    for b in range(n_boot):
        index = np.concatenate([rng.choice(positive, len(positive)), rng.choice(negative, len(negative))])
        values[b] = statistic(index)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)
