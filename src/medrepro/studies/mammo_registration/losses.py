"""The paper's loss (eqs. 2-4) and the study's variants, composed from the kernel's functions.

``L = L_MSE + lambda * L_GIoU`` with ``L_MSE`` the mean squared difference
between the MLO and the registered CC over their overlap mask M (eq. 2; the
squared norm is divided by the mask's size so the term does not scale with
the image) and ``L_GIoU = 1 - GIoU`` between the MLO box and the CC box
carried onto the MLO grid by the inverse transform and rectified
(:func:`..networks.carry_cc_boxes`); lambda = 1000 in the paper.

Variants: "mse" (every MLO pixel, no mask), "masked_mse" (eq. 2 alone) and
"masked_mse_giou" (the paper's method).
"""

from __future__ import annotations

import torch

from medrepro.nn import losses

from medrepro.spatial import warp

from .networks import carry_cc_boxes

VARIANTS = ("mse", "masked_mse", "masked_mse_giou")
PAPER_GIOU_WEIGHT = 1000.0


def registration_loss(
    cc: torch.Tensor,
    mlo: torch.Tensor,
    matrix: torch.Tensor,
    cc_boxes: torch.Tensor,
    mlo_boxes: torch.Tensor,
    variant: str = "masked_mse_giou",
    giou_weight: float = PAPER_GIOU_WEIGHT,
    mlo_region: torch.Tensor | None = None,
    cc_region: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The loss terms for one batch: {"total", "mse", "giou_loss"}, scalar tensors.

    ``cc`` (B, C, H, W) and ``mlo`` (B, C, H', W') are the images compared
    (the same channels); ``matrix`` (B, 2, 3) the pixel affine sampling the
    CC onto the MLO grid; boxes (B, 4) or (B, K, 4) in each view's pixels.
    The overlap mask is :func:`medrepro.spatial.warp.overlap_mask` of the CC's
    warped support with ``mlo_region`` and ``cc_region`` (breast masks,
    optional). "mse" and "giou_loss" are reported for every variant; only
    the variant's own terms enter "total".
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    warped = warp.affine_warp(cc, matrix, mlo.shape[-2:])
    if variant == "mse":
        mse = losses.mse(warped, mlo)
    else:
        mask = warp.overlap_mask(cc.shape[-2:], matrix, mlo.shape[-2:], mlo_region, cc_region)
        mse = losses.masked_mse(warped, mlo, mask)
    giou = losses.giou_loss(carry_cc_boxes(matrix, cc_boxes), mlo_boxes)
    total = mse + giou_weight * giou if variant == "masked_mse_giou" else mse
    return {"total": total, "mse": mse, "giou_loss": giou}
