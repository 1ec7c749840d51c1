"""Multi-atlas segmentation with a trained registration network (paper section 5.3).

For each target image the ``k`` atlases (images with ground-truth labels, e.g.
JSRT) that maximise the global normalised cross-correlation with it are
registered to it (atlas = moving, target = fixed), their label maps are warped
by the predicted displacements and fused by per-pixel majority voting.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from medrepro.nn.device import module_device
from medrepro.errors import ConfigError
from medrepro.studies.chest.autoencoder import check_label_stack
from medrepro.studies.chest.inference import register_batch, warp_label_maps

__all__ = ["SegmentationResult", "global_ncc", "select_atlases", "majority_vote", "segment"]

_NCC_CHUNK = 1024  # targets normalised at a time, to bound the float64 copies


@dataclasses.dataclass
class SegmentationResult:
    """Fused masks (T, S, S) uint8, chosen atlases (T, k) best first, and their NCC with the target (T, k)."""

    masks: np.ndarray
    atlas_index: np.ndarray
    atlas_ncc: np.ndarray


def _check_stack(stack: np.ndarray, what: str) -> None:
    if not isinstance(stack, np.ndarray) or stack.ndim != 3:
        raise ValueError(f"{what} must be an (N, S, S) array, got shape {getattr(stack, 'shape', None)}")


def _unit_rows(images: np.ndarray) -> np.ndarray:
    """Flattened images, mean-centred and scaled to unit L2 norm (float64); constant images become 0.

    A constant image has no correlation with anything, so its all-zero row makes
    every NCC with it 0 instead of 0/0. Constancy is tested exactly (max == min)
    rather than by a norm threshold, which centring round-off could defeat.
    """
    rows = images.reshape(len(images), -1).astype(np.float64)
    constant = rows.max(axis=1) == rows.min(axis=1) if rows.shape[1] else np.ones(len(rows), bool)
    rows -= rows.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    norms[constant] = 1.0
    rows /= norms
    rows[constant] = 0.0
    return rows


def _ncc_with_units(targets: np.ndarray, atlas_units: np.ndarray) -> np.ndarray:
    out = np.empty((len(targets), len(atlas_units)), dtype=np.float64)
    for start in range(0, len(targets), _NCC_CHUNK):
        chunk = slice(start, start + _NCC_CHUNK)
        out[chunk] = _unit_rows(targets[chunk]) @ atlas_units.T
    return out


def global_ncc(targets: np.ndarray, atlases: np.ndarray) -> np.ndarray:
    """(T, A) global normalised cross-correlation of each target with each atlas, in [-1, 1].

    The Pearson correlation of all pixel values, as the registration loss uses
    (``medrepro.nn.losses.ncc_loss`` without its epsilon); 0 where either image
    is constant.
    """
    _check_stack(targets, "targets")
    _check_stack(atlases, "atlases")
    if targets.shape[1:] != atlases.shape[1:]:
        raise ValueError(f"targets {targets.shape[1:]} and atlases {atlases.shape[1:]} differ in image size")
    return _ncc_with_units(targets, _unit_rows(atlases))


def _check_k(k: int, n_atlases: int) -> None:
    if not 1 <= k <= n_atlases:
        raise ConfigError(f"k = {k} atlases requested, but it must lie in 1..{n_atlases} (the number of atlases)")


def select_atlases(ncc: np.ndarray, k: int) -> np.ndarray:
    """(T, k) indices of the ``k`` atlases most similar to each target, highest NCC first.

    Ties keep the lower atlas index first (stable sort), so the choice does not
    depend on sorting internals.
    """
    ncc = np.asarray(ncc)
    if ncc.ndim != 2:
        raise ValueError(f"ncc must be a (T, A) array, got shape {ncc.shape}")
    _check_k(k, ncc.shape[1])
    return np.argsort(-ncc, axis=1, kind="stable")[:, :k]


def majority_vote(label_stack: np.ndarray, n_classes: int) -> np.ndarray:
    """(T, k, S, S) candidate label maps -> (T, S, S) uint8, the most frequent label per pixel.

    Ties go to the lowest of the tied labels: with 0 as background this is
    conservative, a pixel becomes foreground only when some structure has
    strictly more votes than background, and between two structures the lower
    label wins (the same rule as
    ``warp_label_maps``). Counts are taken one class at a time over the whole
    stack, so the cost is ``n_classes`` vectorised passes.
    """
    label_stack = np.asarray(label_stack)
    if label_stack.ndim != 4 or label_stack.shape[1] == 0:
        raise ValueError(f"label_stack must be (T, k, S, S) with k >= 1, got shape {label_stack.shape}")
    if not 1 <= n_classes <= 256:
        raise ValueError(f"n_classes must lie in 1..256, got {n_classes}")
    if label_stack.size and (label_stack.min() < 0 or label_stack.max() >= n_classes):
        raise ValueError(
            f"labels span {label_stack.min()}..{label_stack.max()}, outside 0..{n_classes - 1} for {n_classes} classes"
        )
    shape = (label_stack.shape[0], *label_stack.shape[2:])
    best = np.zeros(shape, dtype=np.uint8)
    best_count = np.full(shape, -1, dtype=np.int64)
    for label in range(n_classes):
        count = np.count_nonzero(label_stack == label, axis=1)
        wins = count > best_count  # strict: an equal count keeps the lower label found earlier
        best[wins] = label
        best_count[wins] = count[wins]
    return best


def segment(
    model: torch.nn.Module,
    targets: np.ndarray,
    atlas_images: np.ndarray,
    atlas_labels: np.ndarray,
    n_classes: int,
    k: int = 5,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> SegmentationResult:
    """Segment each target by registering its ``k`` most similar atlases to it and voting.

    Targets are processed ``max(1, batch_size // k)`` at a time, so memory
    holds at most about ``max(batch_size, k)`` displacement fields whatever T
    is; the network sees ``batch_size`` pairs per forward pass.
    """
    _check_stack(targets, "targets")
    _check_stack(atlas_images, "atlas_images")
    check_label_stack(atlas_labels, n_classes, None, "atlas_labels")
    if atlas_images.shape != atlas_labels.shape or targets.shape[1:] != atlas_images.shape[1:]:
        raise ValueError(
            f"targets {targets.shape}, atlas_images {atlas_images.shape} and atlas_labels {atlas_labels.shape} "
            "must share the image size, and atlases must have one label map each"
        )
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    _check_k(k, len(atlas_images))
    device = module_device(model, device)
    atlas_units = _unit_rows(atlas_images)
    masks = np.empty(targets.shape, dtype=np.uint8)
    atlas_index = np.empty((len(targets), k), dtype=np.int64)
    atlas_ncc = np.empty((len(targets), k), dtype=np.float64)
    step = max(1, batch_size // k)
    for start in range(0, len(targets), step):
        chunk = slice(start, start + step)
        ncc = _ncc_with_units(targets[chunk], atlas_units)
        chosen = select_atlases(ncc, k)
        atlas_index[chunk] = chosen
        atlas_ncc[chunk] = np.take_along_axis(ncc, chosen, axis=1)
        moving = atlas_images[chosen.ravel()]
        fixed = np.repeat(targets[chunk], k, axis=0)
        displacement = register_batch(model, moving, fixed, batch_size=batch_size, device=device)
        warped = warp_label_maps(atlas_labels[chosen.ravel()], displacement, n_classes, batch_size=batch_size)
        masks[chunk] = majority_vote(warped.reshape(len(chosen), k, *targets.shape[1:]), n_classes)
    return SegmentationResult(masks=masks, atlas_index=atlas_index, atlas_ncc=atlas_ncc)
