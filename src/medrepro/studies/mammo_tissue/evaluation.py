"""Scoring the classifiers, the heatmap models and the saliency, per seed, in files the tables and claims read.

* Classifier predictions (one file per magnification and seed): each test patch's label and P(findings).
* Heatmap errors (one file per model and seed): each mammogram's MSE against its blurred annotation at the
  heatmap's 32 x 32 resolution, for the training and the validation mammograms (Table 3).
* Saliency shares (one file per seed): for each positive test mammogram the share of the saliency's mass inside
  the annotations, beside the same share for the predicted heatmap alone and for a uniform map.

:func:`long_scores` puts them in the kernel's long format (method, seed, case, metric columns) for statistics
and claims: a patch's ``error`` (0/1 at the 0.5 threshold) and ``auc_contribution``
(:func:`medrepro.metrics.classification.auc_contributions`, whose mean is the AUC); a mammogram's ``mse``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from medrepro.metrics.classification import auc_contributions, confusion_percentages, roc_auc, stratified_bootstrap
from medrepro.report.scores import SOURCE

PREDICTION_COLUMNS = ["magnification", "seed", "view_id", "case", "row", "col", "label", "probability"]
HEATMAP_COLUMNS = ["model", "seed", "split", "view_id", "case", "mse", "mse_empty"]
SALIENCY_COLUMNS = ["seed", "view_id", "case", "patches_kept", "saliency_share", "heatmap_share", "uniform_share"]
THRESHOLD = 0.5


def classification_row(frames: list[pd.DataFrame], n_boot: int, seed: int) -> dict:
    """One magnification's Table 2 row from its seeds' predictions (the same test patches in each): the mean over
    seeds of TP, FP, TN, FN, total error (percent of all test patches) and AUC, and a stratified bootstrap
    interval of the seeds' mean AUC over the test patches."""
    labels = frames[0]["label"].to_numpy()
    scores = [f["probability"].to_numpy() for f in frames]
    for f in frames[1:]:
        if not np.array_equal(f["label"].to_numpy(), labels):
            raise ValueError("the seeds' predictions are not of the same test patches")
    rows = [{**confusion_percentages(labels, s, THRESHOLD), "auc": roc_auc(labels, s)} for s in scores]
    mean = pd.DataFrame(rows).mean().to_dict()
    low, high = stratified_bootstrap(lambda i: float(np.mean([roc_auc(labels[i], s[i]) for s in scores])), labels,
                                     n_boot, seed)
    return {**mean, "auc_ci_low": low, "auc_ci_high": high, "n_test": int(len(labels))}


def classification_long(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per (magnification, seed, patch): error at the threshold and AUC contribution, in the long format."""
    frames = []
    for (method, seed), group in predictions.groupby(["magnification", "seed"], sort=False):
        labels, scores = group["label"].to_numpy(), group["probability"].to_numpy()
        frames.append(pd.DataFrame({
            "method": method, "seed": seed,
            "case": group["view_id"].astype(str) + ":" + group["row"].astype(str) + ":" + group["col"].astype(str),
            "error": ((scores >= THRESHOLD) != labels.astype(bool)).astype(float),
            "auc_contribution": auc_contributions(labels, scores),
            SOURCE: group[SOURCE].to_numpy() if SOURCE in group else ""}))
    return pd.concat(frames, ignore_index=True)


def heatmap_long(errors: pd.DataFrame) -> pd.DataFrame:
    """Per (model, seed, mammogram): its MSE, with the split as a grouping column."""
    out = errors.rename(columns={"model": "method"})
    out["case"] = out["view_id"].astype(str)
    return out[["method", "seed", "case", "split", "mse", *([SOURCE] if SOURCE in out else [])]]


def image_mse(predicted: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Each image's mean squared error (n,)."""
    return ((np.asarray(predicted, np.float64) - np.asarray(targets, np.float64)) ** 2).reshape(len(targets), -1) \
        .mean(axis=1)
