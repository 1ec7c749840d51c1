"""Cardiomegaly vs healthy classification from segmentation masks (paper section 5.3).

Two 32-d representations of each mask feed an RBF support vector machine
under stratified k-fold cross-validation (20 folds in the paper): ``pca32``,
the first 32 principal components of the vectorised mask, and ``ae32``, the
code of the anatomy autoencoder. PCA and standardisation sit in a scikit-learn
``Pipeline``, so they are fitted on each training fold only and never see the
test fold. The cardiothoracic-ratio rule is scored on the very same folds.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from medrepro.errors import ConfigError
from medrepro.spatial.warp import to_onehot
from medrepro.nn.device import module_device, place

__all__ = [
    "REPRESENTATIONS", "build_pipeline", "stratified_folds", "cross_validate", "ctr_threshold_accuracy",
    "autoencoder_codes",
]

REPRESENTATIONS = ("pca32", "ae32")


def build_pipeline(
    representation: str = "pca32",
    seed: int = 0,
    *,
    n_components: int = 32,
    kernel: str = "rbf",
    C: float = 1.0,
    gamma: str | float = "scale",
) -> Pipeline:
    """Unfitted classifier: [PCA ->] standardisation -> SVC.

    ``pca32`` projects raw vectorised masks on ``n_components`` principal
    components (the paper keeps 32; seeded, as the randomised solver may be
    chosen for large inputs). The features are then standardised because the
    RBF kernel measures plain Euclidean distances, which unscaled components of
    very different variance would dominate. ``kernel``, ``C`` and ``gamma`` are
    scikit-learn's SVC defaults, since the paper reports no tuning.
    """
    if representation not in REPRESENTATIONS:
        raise ConfigError(f"unknown representation {representation!r}; expected one of {', '.join(REPRESENTATIONS)}")
    steps = []
    if representation == "pca32":
        steps.append(("pca", PCA(n_components=n_components, random_state=seed)))
    steps += [("scale", StandardScaler()), ("svm", SVC(kernel=kernel, C=C, gamma=gamma))]
    return Pipeline(steps)


def stratified_folds(y: np.ndarray, folds: int = 20, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs of shuffled stratified k-fold; ConfigError when a class is too small."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be a 1-d label vector, got shape {y.shape}")
    if folds < 2:
        raise ConfigError(f"cross-validation needs at least 2 folds, got {folds}")
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2 or counts.min() < folds:
        found = ", ".join(f"{label!r}: {count}" for label, count in zip(classes.tolist(), counts.tolist()))
        raise ConfigError(f"{folds}-fold stratified cross-validation needs at least two classes with {folds} "
                          f"members each; class counts are {{{found}}}")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros((len(y), 1)), y))


def _summary(accuracies: list[float], estimators: list[Pipeline] | None = None) -> dict:
    result = {
        "accuracy_mean": float(np.mean(accuracies)),
        "accuracy_sd": float(np.std(accuracies, ddof=1)),
        "folds": len(accuracies),
        "fold_accuracies": [float(value) for value in accuracies],
    }
    if estimators is not None:
        result["estimators"] = estimators
    return result


def cross_validate(
    features: np.ndarray,
    y: np.ndarray,
    folds: int = 20,
    seed: int = 0,
    representation: str = "pca32",
    *,
    return_estimators: bool = False,
    **pipeline_options,
) -> dict:
    """Stratified k-fold accuracy of :func:`build_pipeline` on (N, F) ``features`` and (N,) labels ``y``.

    Returns ``accuracy_mean``, ``accuracy_sd`` (sample SD over folds, ddof=1),
    ``folds`` and ``fold_accuracies`` (in fold order); with
    ``return_estimators`` also the fitted pipeline of each fold.
    ``pipeline_options`` go to :func:`build_pipeline`.
    """
    features = np.asarray(features)
    if features.ndim != 2 or len(features) != len(y):
        raise ValueError(f"features must be (N, F) with N = len(y) = {len(y)}, got shape {features.shape}")
    pipeline = build_pipeline(representation, seed, **pipeline_options)
    n_components = pipeline_options.get("n_components", 32)
    if representation == "pca32" and features.shape[1] < n_components:
        raise ConfigError(f"PCA to {n_components} components needs at least that many features, "
                          f"got {features.shape[1]}")
    y = np.asarray(y)
    accuracies, fitted = [], []
    for train, test in stratified_folds(y, folds, seed):
        model = clone(pipeline).fit(features[train], y[train])
        accuracies.append(model.score(features[test], y[test]))
        fitted.append(model)
    return _summary(accuracies, fitted if return_estimators else None)


def ctr_threshold_accuracy(
    ctr: np.ndarray, y: np.ndarray, folds: int = 20, seed: int = 0, threshold: float = 0.5
) -> dict:
    """Accuracy of the rule "cardiomegaly (1) iff CTR > threshold" on the folds of :func:`cross_validate`.

    The rule has nothing to fit, but scoring it per test fold of the same
    seeded split makes its mean and SD comparable with the classifiers'. A NaN
    CTR (heart or lung missing) counts as a wrong answer whatever the label.
    """
    ctr, y = np.asarray(ctr, dtype=np.float64), np.asarray(y)
    if ctr.shape != y.shape or ctr.ndim != 1:
        raise ValueError(f"ctr {ctr.shape} and y {y.shape} must be equal 1-d vectors")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y must hold 0 (healthy) and 1 (cardiomegaly) only")
    correct = np.isfinite(ctr) & ((ctr > threshold) == (y == 1))
    return _summary([float(correct[test].mean()) for _, test in stratified_folds(y, folds, seed)])


def autoencoder_codes(
    encoder: torch.nn.Module,
    masks: np.ndarray,
    n_classes: int,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """(N, code_dim) float32 codes of (N, S, S) label maps from the autoencoder's ``encode``.

    Masks are one-hot encoded as in training and in
    :func:`medrepro.nn.losses.code_distance`; the encoder must be in eval mode
    (``load_autoencoder`` returns it so), or batch norm would make each code
    depend on the rest of its batch.
    """
    if encoder.training:
        raise ValueError("the encoder must be in eval mode (use medrepro.nn.modules.freeze)")
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be an (N, S, S) stack, got shape {masks.shape}")
    expected = getattr(encoder, "n_classes", n_classes)
    if expected != n_classes:
        raise ValueError(f"the encoder was built for {expected} classes, not {n_classes}")
    device = module_device(encoder, device)
    encoder = place(encoder, device)
    chunks = []
    with torch.no_grad():
        for start in range(0, len(masks), batch_size):
            labels = torch.from_numpy(masks[start:start + batch_size].astype(np.int64)).to(device)
            chunks.append(encoder.encode(to_onehot(labels, n_classes)).float().cpu().numpy())
    code_dim = getattr(encoder, "code_dim", 0)
    return np.concatenate(chunks) if chunks else np.empty((0, code_dim), dtype=np.float32)
