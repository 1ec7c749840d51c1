"""Functional losses for learned registration and detection, apart from any study's loss composition.

Each takes tensors and returns a scalar tensor; none holds state. Images and
masks are (B, C, H, W) in 2-D or (B, C, D, H, W) in 3-D; displacements carry
one channel per spatial axis (x first).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medrepro.spatial import boxes


def ncc_loss(warped: torch.Tensor, fixed: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Negated global normalised cross-correlation, averaged over the batch.

    Per sample, with a and b the mean-centred images over all channels and
    pixels: ``ncc = mean(a * b) / sqrt(mean(a^2) * mean(b^2) + eps)``. ``eps``
    sits inside the square root so that the loss and its gradient stay finite
    for a constant image (e.g. a moving image warped entirely out of view).
    Returns ``-mean_batch(ncc)``, which is -1 for a perfect linear match.
    """
    if warped.shape != fixed.shape:
        raise ValueError(f"warped {tuple(warped.shape)} and fixed {tuple(fixed.shape)} differ in shape")
    a = warped.flatten(start_dim=1)
    b = fixed.flatten(start_dim=1)
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    covariance = (a * b).mean(dim=1)
    variance_product = (a * a).mean(dim=1) * (b * b).mean(dim=1)
    return -(covariance / torch.sqrt(variance_product + eps)).mean()


def total_variation(displacement: torch.Tensor) -> torch.Tensor:
    """Mean absolute forward difference along each spatial axis, then their average.

    In 2-D ``0.5 * (mean|d[..., :, 1:] - d[..., :, :-1]| + mean|d[..., 1:, :] - d[..., :-1, :]|)``;
    in 3-D the same over x, y and z with weight 1/3. Each mean is taken over
    every element (batch, all displacement channels and all difference
    positions), so the value does not depend on batch or image size.
    """
    n_dims = displacement.ndim - 2
    if n_dims not in (2, 3) or displacement.shape[1] != n_dims:
        raise ValueError(
            f"displacement must be (B, 2, H, W) or (B, 3, D, H, W), got shape {tuple(displacement.shape)}"
        )
    total = None
    for axis in range(displacement.ndim - 1, 1, -1):  # x first, then y (then z)
        n = displacement.shape[axis]
        step = (displacement.narrow(axis, 1, n - 1) - displacement.narrow(axis, 0, n - 1)).abs().mean()
        total = step if total is None else total + step
    return (1.0 / n_dims) * total


def onehot_cross_entropy(pred_probs: torch.Tensor, target_onehot: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Categorical cross-entropy between (B, C, ...) probabilities and one-hot targets (2-D or 3-D).

    ``-sum_c t_c * log(clip(p_c, eps, 1 - eps))`` per pixel, averaged over
    pixels and batch. Clipping keeps the log finite where the warped mask
    gives a class zero probability.
    """
    if pred_probs.shape != target_onehot.shape:
        raise ValueError(
            f"prediction {tuple(pred_probs.shape)} and target {tuple(target_onehot.shape)} differ in shape"
        )
    log_probs = torch.log(pred_probs.clamp(eps, 1.0 - eps))
    return -(target_onehot * log_probs).sum(dim=1).mean()


def code_distance(encoder: nn.Module, warped_onehot: torch.Tensor, target_onehot: torch.Tensor) -> torch.Tensor:
    """Squared L2 distance between the codes of two masks, averaged over the batch.

    ``encoder`` must provide ``encode`` and be in eval mode: in training mode
    its batch norm would make each code depend on the rest of the batch.
    Gradients flow through the encoder to ``warped_onehot``; the target code is
    a constant.
    """
    if encoder.training:
        raise ValueError("the encoder must be in eval mode (use medrepro.nn.modules.freeze)")
    with torch.no_grad():
        target_code = encoder.encode(target_onehot)
    warped_code = encoder.encode(warped_onehot)
    return ((warped_code - target_code) ** 2).sum(dim=1).mean()


def mse(warped: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
    """Mean squared difference over every element (batch, channels, pixels)."""
    if warped.shape != fixed.shape:
        raise ValueError(f"warped {tuple(warped.shape)} and fixed {tuple(fixed.shape)} differ in shape")
    return ((warped - fixed) ** 2).mean()


def masked_mse(
    moving_warped: torch.Tensor, fixed: torch.Tensor, mask: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Mean squared difference inside a mask: the masked squared norm divided by the mask's size.

    Per sample ``sum(m * (warped - fixed)^2) / sum(m)`` over channels and
    pixels, with ``m`` the mask broadcast to the images' shape: a (B, 1, H, W)
    mask averages the channels of every masked pixel; non-boolean masks act
    as weights. A sample whose mask is empty scores 0 with zero gradient
    (nothing to compare). ``reduction``: "mean" over the batch (empty
    samples count as 0), "sum", or "none" for the (B,) values.
    """
    if moving_warped.shape != fixed.shape:
        raise ValueError(f"warped {tuple(moving_warped.shape)} and fixed {tuple(fixed.shape)} differ in shape")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    weights = torch.as_tensor(mask, device=fixed.device).to(fixed.dtype).expand_as(fixed)
    squared = weights * (moving_warped - fixed) ** 2
    total = squared.flatten(start_dim=1).sum(dim=1)
    count = weights.flatten(start_dim=1).sum(dim=1)
    per_sample = torch.where(count > 0, total / torch.where(count > 0, count, torch.ones_like(count)), 0.0)
    if reduction == "none":
        return per_sample
    return per_sample.sum() if reduction == "sum" else per_sample.mean()


def giou_loss(pred_boxes: torch.Tensor, target_boxes: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``1 - GIoU`` of paired (..., 4) boxes (``medrepro.spatial.boxes`` conventions), averaged unless told.

    ``reduction``: "mean" or "sum" over every pair, or "none" for the
    elementwise values of ``medrepro.spatial.boxes.giou_loss``.
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    values = boxes.giou_loss(pred_boxes, target_boxes)
    if reduction == "none":
        return values
    return values.sum() if reduction == "sum" else values.mean()


def focal_terms(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
                negative_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The elementwise positive and negative parts of the binary focal loss (Lin et al. 2017) of ``logits``.

    With ``p = sigmoid(logits)`` and 0/1 targets ``t``: positive
    ``-(1 - p)^gamma log(p) t``, negative ``-w p^gamma log(1 - p) (1 - t)``,
    where ``w`` is ``negative_weight`` (1 when None; CenterNet's
    penalty-reduced variant down-weights negatives near a centre with it).
    The logs are log-sigmoids, finite for any logit. ``gamma < 1`` has an
    infinite gradient where p reaches exactly 0 or 1.
    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")
    probability = torch.sigmoid(logits)
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    positive = -((1 - probability) ** gamma) * log_p * target
    modulating = -(probability**gamma) if negative_weight is None else -negative_weight * probability**gamma
    negative = modulating * log_not_p * (1 - target)
    return positive, negative


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               alpha: float | Sequence[float] | None = None, softmax: bool = False,
               reduction: str = "mean") -> torch.Tensor:
    """Focal loss of (B, C, ...) logits against targets of the same shape: binary, or multi-class with ``softmax``.

    Binary (each element its own sigmoid, 0/1 targets): :func:`focal_terms`
    summed, with ``alpha`` (a number) weighting positives by ``alpha`` and
    negatives by ``1 - alpha``; the same values as MONAI's ``FocalLoss()``.
    Multi-class (softmax over C, one-hot targets): ``-sum_c a_c (1 - p_c)^gamma
    log(p_c) t_c`` per element, with ``alpha`` one weight per class (None: 1).
    The classes are summed, so that ``gamma = 0`` is the cross-entropy; MONAI's
    ``FocalLoss(use_softmax=True)`` also averages over them (C times less).
    ``reduction``: "mean" or "sum" over every value, or "none" for the map
    ((B, C, ...) binary, (B, ...) multi-class).
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    values = _softmax_focal(logits, target, gamma, alpha) if softmax else _sigmoid_focal(logits, target, gamma, alpha)
    if reduction == "none":
        return values
    return values.sum() if reduction == "sum" else values.mean()


def _sigmoid_focal(logits: torch.Tensor, target: torch.Tensor, gamma: float, alpha: float | None) -> torch.Tensor:
    if alpha is not None and not isinstance(alpha, (int, float)):
        raise ValueError(f"the binary focal loss takes one alpha (the positives' weight), got {alpha!r}")
    positive, negative = focal_terms(logits, target, gamma)
    return positive + negative if alpha is None else alpha * positive + (1 - alpha) * negative


def _softmax_focal(logits: torch.Tensor, target: torch.Tensor, gamma: float,
                   alpha: Sequence[float] | None) -> torch.Tensor:
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")
    log_p = F.log_softmax(logits, dim=1)
    values = -((1 - log_p.exp()) ** gamma) * log_p * target
    if alpha is not None:
        weights = torch.as_tensor(alpha, dtype=values.dtype, device=values.device)
        if weights.ndim != 1 or len(weights) != logits.shape[1]:
            raise ValueError(f"the multi-class focal loss takes one alpha per class ({logits.shape[1]}), "
                             f"got {alpha!r}")
        values = values * weights.view(-1, *[1] * (logits.ndim - 2))
    return values.sum(dim=1)
