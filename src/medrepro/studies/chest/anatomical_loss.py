"""Section 5.1 / Fig. 2: pixel-level versus learnt (autoencoder) loss on modified masks.

Every reference mask gets four modified versions that differ from it in
exactly ``n_pixels`` pixels (foreground set to background):

* (a) plausible: the organ borders are eroded, pixels spread over the
  contours of the lungs and the heart;
* (b) the apex (top) of the right lung is cut off;
* (c) the base (bottom) of the left lung is cut off;
* (d) the lower part of the heart is cut off (the base of the right lung when
  the masks have no heart, as in Montgomery and Shenzhen).

The pixel cross-entropy ``l_ce`` only counts disagreeing pixels, so it is the
same for all four versions; ``l_ae``, the squared distance between encoder
codes, should be lowest for the plausible version (a).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import torch

from medrepro.studies.chest.subjects import BACKGROUND, HEART, LEFT_LUNG, RIGHT_LUNG

PROBABILITY_FLOOR = 1e-7
VARIANTS = ("a", "b", "c", "d")
Encoder = Callable[[torch.Tensor], torch.Tensor]


def border_pixels(labels: np.ndarray) -> np.ndarray:
    """Foreground pixels with a 4-neighbour of another label (outside the array counts as background)."""
    padded = np.pad(labels, 1, mode="constant", constant_values=BACKGROUND)
    centre = padded[1:-1, 1:-1]
    differs = np.zeros(labels.shape, bool)
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        differs |= padded[1 + dr : padded.shape[0] - 1 + dr, 1 + dc : padded.shape[1] - 1 + dc] != centre
    return differs & (labels != BACKGROUND)


def modify_plausible(labels: np.ndarray, n_pixels: int, rng: np.random.Generator) -> np.ndarray:
    """Erode the organ borders: set exactly ``n_pixels`` border foreground pixels to background.

    Pixels are drawn uniformly from the border of every organ at once, so the
    erosion is spread over the lungs and heart in proportion to their contour
    length. When a whole border layer is smaller than what is left to remove,
    it is removed entirely and the next layer is used.
    """
    labels = np.asarray(labels)
    if np.count_nonzero(labels) < n_pixels:
        raise ValueError(f"mask has {np.count_nonzero(labels)} foreground pixels, cannot remove {n_pixels}")
    modified = labels.copy()
    remaining = n_pixels
    while remaining > 0:
        rows, cols = np.nonzero(border_pixels(modified))
        take = np.arange(rows.size) if rows.size <= remaining else np.sort(rng.choice(rows.size, remaining, replace=False))
        modified[rows[take], cols[take]] = BACKGROUND
        remaining -= take.size
    return modified


def _anchor(rows: np.ndarray, cols: np.ndarray, where: str) -> tuple[int, int]:
    """The organ pixel at the middle of its top or bottom row."""
    if where not in ("top", "bottom"):
        raise ValueError(f"where must be 'top' or 'bottom', got {where!r}")
    extreme = rows.min() if where == "top" else rows.max()
    in_row = np.sort(cols[rows == extreme])
    return int(extreme), int(in_row[in_row.size // 2])


def modify_block(
    labels: np.ndarray, n_pixels: int, rng: np.random.Generator, organ: int, where: str = "top"
) -> np.ndarray:
    """Remove a compact part of exactly ``n_pixels`` from one organ.

    The part is the ``n_pixels`` organ pixels closest to the middle of the
    organ's top (or bottom) row, i.e. the organ's tip cut off by an arc. Ties
    in distance are broken at random with ``rng``.
    """
    labels = np.asarray(labels)
    rows, cols = np.nonzero(labels == organ)
    if rows.size <= n_pixels:
        raise ValueError(f"organ {organ} has {rows.size} pixels, cannot remove a part of {n_pixels}")
    anchor_row, anchor_col = _anchor(rows, cols, where)
    squared = (rows - anchor_row).astype(np.int64) ** 2 + (cols - anchor_col).astype(np.int64) ** 2
    order = np.lexsort((rng.permutation(rows.size), squared))[:n_pixels]
    modified = labels.copy()
    modified[rows[order], cols[order]] = BACKGROUND
    return modified


def modified_versions(labels: np.ndarray, n_pixels: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The four versions (a)-(d) described in the module docstring."""
    last_organ, last_where = (HEART, "bottom") if np.any(labels == HEART) else (RIGHT_LUNG, "bottom")
    return {
        "a": modify_plausible(labels, n_pixels, rng),
        "b": modify_block(labels, n_pixels, rng, RIGHT_LUNG, "top"),
        "c": modify_block(labels, n_pixels, rng, LEFT_LUNG, "bottom"),
        "d": modify_block(labels, n_pixels, rng, last_organ, last_where),
    }


def onehot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(..., S, S) integer labels -> (..., C, S, S) float32 one-hot."""
    encoded = np.eye(n_classes, dtype=np.float32)[labels]
    return np.moveaxis(encoded, -1, -3)


def pixel_cross_entropy(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean over pixels of -sum_c target_c * log(clip(pred_c, 1e-7, 1)); inputs (C, S, S)."""
    log_pred = np.log(np.clip(pred.astype(np.float64), PROBABILITY_FLOOR, 1.0))
    return float(np.mean(-np.sum(target * log_pred, axis=0)))


def encode(encoder: Encoder, batch: np.ndarray) -> np.ndarray:
    """Codes of a (B, C, S, S) batch; a module is run in eval mode and its mode restored."""
    module = encoder if isinstance(encoder, torch.nn.Module) else None
    was_training = module.training if module is not None else False
    parameter = next(module.parameters(), None) if module is not None else None
    device = parameter.device if parameter is not None else torch.device("cpu")
    try:
        if module is not None:
            module.eval()
        with torch.no_grad():
            codes = encoder(torch.from_numpy(batch).to(device))
    finally:
        if module is not None:
            module.train(was_training)
    return codes.detach().double().cpu().reshape(batch.shape[0], -1).numpy()


def choose_masks(n_available: int, n_masks: int = 20, seed: int = 0) -> np.ndarray:
    """Indices of ``n_masks`` distinct random masks, in increasing order."""
    if n_masks > n_available:
        raise ValueError(f"asked for {n_masks} masks, only {n_available} available")
    return np.sort(np.random.default_rng(seed).choice(n_available, n_masks, replace=False))


def _check_masks(masks: np.ndarray, n_classes: int) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.shape[1] != masks.shape[2]:
        raise ValueError(f"masks must have shape (M, S, S), got {masks.shape}")
    if not np.issubdtype(masks.dtype, np.integer):
        raise ValueError(f"masks must hold integer labels, got dtype {masks.dtype}")
    if masks.size and (masks.min() < 0 or masks.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), found {masks.min()}..{masks.max()}")
    return masks


def anatomical_loss_experiment(
    masks: np.ndarray, n_classes: int, encoder: Encoder, n_pixels: int = 120, seed: int = 0
) -> pd.DataFrame:
    """L_ce and L_ae between every mask and its four modified versions.

    ``encoder`` maps a float one-hot batch (B, C, S, S) to codes (B, 32).
    Returns one row per (mask, variant): mask_index, variant, changed_pixels,
    l_ce, l_ae. Each mask uses its own generator seeded by (seed, index), so
    its rows depend only on the mask, its index and ``seed``.
    """
    masks = _check_masks(masks, n_classes)
    rows = []
    for index, labels in enumerate(masks):
        versions = modified_versions(labels, n_pixels, np.random.default_rng([seed, index]))
        batch = onehot(np.stack([labels, *versions.values()]), n_classes)
        codes = encode(encoder, batch)
        for k, (variant, modified) in enumerate(versions.items(), start=1):
            rows.append({
                "mask_index": index,
                "variant": variant,
                "changed_pixels": int(np.count_nonzero(modified != labels)),
                "l_ce": pixel_cross_entropy(batch[k], batch[0]),
                "l_ae": float(np.sum((codes[k] - codes[0]) ** 2)),
            })
    return pd.DataFrame(rows, columns=["mask_index", "variant", "changed_pixels", "l_ce", "l_ae"])
