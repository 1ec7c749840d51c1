"""Reverse classification accuracy (RCA) with a single-atlas registration classifier.

RCA (Valindria et al., 2017) estimates the quality of a segmentation without
its ground truth: the image with its *predicted* mask becomes an atlas, is
registered (moving) to every reference image with ground truth (fixed), and
its warped mask is scored against each reference's labels. If the prediction
is right, at least one reference is similar enough for the transferred mask to
match well, so the best Dice over the references is the predicted Dice.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import torch

from medrepro.nn.device import module_device
from medrepro.errors import ConfigError
from medrepro.metrics.overlap import dice
from medrepro.studies.chest.autoencoder import check_label_stack
from medrepro.studies.chest.inference import register_batch, warp_label_maps

__all__ = ["RCAResult", "mean_foreground_dice", "batch_mean_dice", "rca_scores"]


@dataclasses.dataclass
class RCAResult:
    """Predicted Dice (N,), the reference giving it (N,), and every image-reference Dice (N, R) float32."""

    predicted_dice: np.ndarray
    best_reference: np.ndarray
    all_dice: np.ndarray


def _check_labels(labels: Sequence[int]) -> list[int]:
    labels = [int(label) for label in labels]
    if not labels:
        raise ValueError("at least one label is needed to compute a mean Dice")
    return labels


def mean_foreground_dice(a: np.ndarray, b: np.ndarray, labels: Sequence[int]) -> float:
    """Mean over ``labels`` of the Dice of ``a == label`` and ``b == label``.

    A label absent from both maps counts as 1.0, as in
    :func:`medrepro.metrics.overlap.dice`: both segmentations agree that the
    structure is not there, and scoring it 0 would penalise, e.g., a correct
    lungs-only prediction on a reference without a heart label.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"label maps differ in shape: {a.shape} vs {b.shape}")
    return float(np.mean([dice(a == label, b == label) for label in _check_labels(labels)]))


def batch_mean_dice(a: np.ndarray, b: np.ndarray, labels: Sequence[int]) -> np.ndarray:
    """:func:`mean_foreground_dice` for each of P pairs of (P, S, S) label maps, vectorised; float64 (P,)."""
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(f"label stacks must be equal (P, ...) arrays, got {a.shape} and {b.shape}")
    labels = _check_labels(labels)
    total = np.zeros(len(a), dtype=np.float64)
    axes = tuple(range(1, a.ndim))
    for label in labels:
        in_a, in_b = a == label, b == label
        sizes = np.count_nonzero(in_a, axis=axes) + np.count_nonzero(in_b, axis=axes)
        overlap = np.count_nonzero(in_a & in_b, axis=axes)
        total += np.where(sizes == 0, 1.0, 2.0 * overlap / np.maximum(sizes, 1))
    return total / len(labels)


def rca_scores(
    model: torch.nn.Module,
    images: np.ndarray,
    predicted: np.ndarray,
    ref_images: np.ndarray,
    ref_labels: np.ndarray,
    n_classes: int,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    labels: Sequence[int] | None = None,
) -> RCAResult:
    """RCA-predicted Dice of each predicted mask, using every reference as a test case.

    Pair (image i, reference r) registers image i (moving) to reference r
    (fixed), warps ``predicted[i]`` and scores it against ``ref_labels[r]`` by
    the mean Dice over ``labels`` (default: every foreground label
    1..n_classes-1). Pairs are processed ``batch_size`` at a time, so memory
    beyond the (N, R) result does not grow with N or R. Ties for the best
    reference go to the lower index.
    """
    if images.ndim != 3 or ref_images.ndim != 3 or images.shape[1:] != ref_images.shape[1:]:
        raise ValueError(f"images {images.shape} and ref_images {ref_images.shape} must be (N, S, S) of one size")
    check_label_stack(predicted, n_classes, None, "predicted")
    check_label_stack(ref_labels, n_classes, None, "ref_labels")
    if predicted.shape != images.shape or ref_labels.shape != ref_images.shape:
        raise ValueError(
            f"predicted {predicted.shape} must match images {images.shape}, "
            f"and ref_labels {ref_labels.shape} must match ref_images {ref_images.shape}"
        )
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    labels = list(range(1, n_classes)) if labels is None else _check_labels(labels)
    device = module_device(model, device)
    n_images, n_refs = len(images), len(ref_images)
    all_dice = np.empty(n_images * n_refs, dtype=np.float32)
    for start in range(0, len(all_dice), batch_size):
        pairs = np.arange(start, min(start + batch_size, len(all_dice)))
        moving, fixed = pairs // n_refs, pairs % n_refs
        displacement = register_batch(model, images[moving], ref_images[fixed], batch_size=batch_size, device=device)
        warped = warp_label_maps(predicted[moving], displacement, n_classes, batch_size=batch_size)
        all_dice[pairs] = batch_mean_dice(warped, ref_labels[fixed], labels)
    all_dice = all_dice.reshape(n_images, n_refs)
    best = np.argmax(all_dice, axis=1)
    return RCAResult(
        predicted_dice=all_dice[np.arange(n_images), best], best_reference=best, all_dice=all_dice
    )
