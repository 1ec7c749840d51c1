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


# --- similarity and regularity terms for deformable registration ------------------------------


def _check_images(a: torch.Tensor, b: torch.Tensor) -> int:
    """Spatial dimensionality (2 or 3) of a pair of same-shaped (B, C, ...) images."""
    if a.shape != b.shape:
        raise ValueError(f"images {tuple(a.shape)} and {tuple(b.shape)} differ in shape")
    if a.ndim not in (4, 5):
        raise ValueError(f"images must be (B, C, H, W) or (B, C, D, H, W), got shape {tuple(a.shape)}")
    return a.ndim - 2


def _window_sum(image: torch.Tensor, window: int) -> torch.Tensor:
    """Sum over the centred cubic (square) window at every voxel, zero padding outside the image."""
    pool = F.avg_pool2d if image.ndim == 4 else F.avg_pool3d
    # count_include_pad keeps the divisor at window**n, so the padded zeros count as samples
    mean = pool(image, kernel_size=window, stride=1, padding=window // 2, count_include_pad=True)
    return mean * window ** (image.ndim - 2)


def local_cross_correlation(a: torch.Tensor, b: torch.Tensor, window: int = 9, squared: bool = True,
                            eps: float = 1e-5) -> torch.Tensor:
    """Local cross-correlation of (B, C, H, W) or (B, C, D, H, W) images, averaged over voxels, channels, batch.

    At each voxel p, over the ``window``-wide cube (square) centred on p with
    ``N = window**n`` samples: ``cross = sum(a b) - sum(a) sum(b) / N`` and
    ``var_a = sum(a^2) - sum(a)^2 / N`` (likewise ``var_b``). Windows that
    reach past the border are zero-padded: the padded zeros count as samples
    and N stays ``window**n`` (MONAI's convention), and every voxel is averaged.

    ``squared=True``: ``cross^2 / (max(var_a, eps) max(var_b, eps))``, in [0, 1]
    up to the floor, equal to minus MONAI's ``LocalNormalizedCrossCorrelationLoss``
    (rectangular kernel, ``smooth_dr=eps``). ``squared=False``: the unsquared,
    unnormalised ratio ``cross / (var_a var_b + eps)``, which keeps the sign of
    the correlation but scales with the intensities (not a correlation coefficient).
    Returns the similarity (larger is better); negate it for a loss.
    """
    _check_images(a, b)
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number, got {window}")
    n_samples = float(window ** (a.ndim - 2))
    sum_a, sum_b = _window_sum(a, window), _window_sum(b, window)
    cross = _window_sum(a * b, window) - sum_a * sum_b / n_samples
    var_a = _window_sum(a * a, window) - sum_a * sum_a / n_samples
    var_b = _window_sum(b * b, window) - sum_b * sum_b / n_samples
    if squared:
        floor = torch.as_tensor(eps, dtype=a.dtype, device=a.device)
        return (cross * cross / (torch.maximum(var_a, floor) * torch.maximum(var_b, floor))).mean()
    return (cross / (var_a * var_b + eps)).mean()


def _parzen_weights(image: torch.Tensor, bins: int, sigma_ratio: float) -> torch.Tensor:
    """(B, n_samples, bins): each voxel's Gaussian weights over bin centres in [0, 1], summing to one."""
    centres = torch.linspace(0.0, 1.0, bins, dtype=image.dtype, device=image.device)
    sigma = sigma_ratio / (bins - 1)
    values = image.clamp(0.0, 1.0).reshape(image.shape[0], -1, 1)
    weights = torch.exp(-((values - centres) ** 2) / (2.0 * sigma**2))
    return weights / weights.sum(dim=-1, keepdim=True)


def mutual_information(a: torch.Tensor, b: torch.Tensor, bins: int = 32, sigma_ratio: float = 0.5,
                       smooth: float = 1e-7) -> torch.Tensor:
    """Global mutual information (nats) of two same-shaped images, averaged over the batch; differentiable.

    Parzen-window estimate: intensities are expected in [0, 1] (values outside
    are clamped, so rescale first); each voxel spreads over ``bins`` evenly
    spaced bin centres with Gaussian weights of width ``sigma_ratio`` bin
    spacings, normalised per voxel. Per sample (all channels pooled) the joint
    histogram is ``p_ab = W_a^T W_b / n`` and the marginals the mean weights;
    ``MI = sum p_ab log((p_ab + s) / (p_a p_b + s) + s)`` with ``s = smooth``.
    The value is minus MONAI's ``GlobalMutualInformationLoss`` (Gaussian kernel)
    with the same settings. The smoothing of the histogram biases the estimate
    below the hard-histogram one, and MI(a, a) below the entropy of a.
    """
    if a.shape != b.shape:
        raise ValueError(f"images {tuple(a.shape)} and {tuple(b.shape)} differ in shape")
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    weights_a = _parzen_weights(a, bins, sigma_ratio)
    weights_b = _parzen_weights(b.to(a.dtype), bins, sigma_ratio)
    joint = weights_a.transpose(1, 2) @ weights_b / weights_a.shape[1]
    marginals = weights_a.mean(dim=1).unsqueeze(2) * weights_b.mean(dim=1).unsqueeze(1)
    information = (joint * torch.log((joint + smooth) / (marginals + smooth) + smooth)).sum(dim=(1, 2))
    return information.mean()


def _check_displacement(displacement: torch.Tensor) -> int:
    n_dims = displacement.ndim - 2
    if n_dims not in (2, 3) or displacement.shape[1] != n_dims:
        raise ValueError(
            f"displacement must be (B, 2, H, W) or (B, 3, D, H, W), got shape {tuple(displacement.shape)}"
        )
    return n_dims


def gradient_norm_smoothness(displacement: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Mean over positions and batch of the Frobenius norm of the displacement's forward-difference Jacobian.

    At p, ``sqrt(sum_{c, j} (u_c(p + e_j) - u_c(p))^2 + eps)`` over the
    displacement channels c and the 2 or 3 axes j, on the interior where every
    forward difference exists (the last row/column/slice is dropped). The mean
    (not the sum) keeps the value independent of image size; ``eps`` gives a
    finite gradient where the field is locally constant (its value there is
    ``sqrt(eps)``).
    """
    n_dims = _check_displacement(displacement)
    interior = [slice(None), slice(None)] + [slice(0, size - 1) for size in displacement.shape[2:]]
    squared = 0.0
    for axis in range(2, 2 + n_dims):
        shifted = list(interior)
        shifted[axis] = slice(1, None)
        squared = squared + ((displacement[tuple(shifted)] - displacement[tuple(interior)]) ** 2).sum(dim=1)
    return torch.sqrt(squared + eps).mean()


def _scipy_gaussian_kernels(sigma: float, truncate: float = 4.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalised Gaussian and its second derivative, sampled on [-r, r] with r = int(truncate sigma + 0.5)."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    gaussian = torch.exp(-0.5 * x**2 / sigma**2)
    gaussian = gaussian / gaussian.sum()
    return gaussian, (x**2 / sigma**4 - 1.0 / sigma**2) * gaussian


def _symmetric_indices(size: int, radius: int, device) -> torch.Tensor:
    """Indices of ``size`` samples extended by ``radius`` on each side with half-sample mirroring (d c b a | a b c d)."""
    index = torch.arange(-radius, size + radius, device=device) % (2 * size)
    return torch.where(index >= size, 2 * size - 1 - index, index)


def _filter_axis(image: torch.Tensor, kernel: torch.Tensor, axis: int) -> torch.Tensor:
    """Correlate (N, ...) ``image`` along ``axis`` with a symmetric 1-D kernel, mirror-padded to keep the size."""
    radius = (len(kernel) - 1) // 2
    padded = image.index_select(axis, _symmetric_indices(image.shape[axis], radius, image.device))
    moved = padded.movedim(axis, -1)
    rows = moved.reshape(-1, 1, moved.shape[-1])
    filtered = F.conv1d(rows, kernel.to(image).view(1, 1, -1))
    return filtered.reshape(*moved.shape[:-1], filtered.shape[-1]).movedim(-1, axis)


def laplacian_of_gaussian(image: torch.Tensor, sigma_vox: float) -> torch.Tensor:
    """Laplacian of the Gaussian-smoothed (B, C, H, W) or (B, C, D, H, W) image, per channel; differentiable.

    The sum over axes of the Gaussian second-derivative kernel along that axis
    and the Gaussian along the others, both truncated at 4 sigma (voxels) and
    sampled as ``scipy.ndimage`` does; borders mirror about the edge
    (half-sample "reflect", d c b a | a b c d). Equals
    ``scipy.ndimage.gaussian_laplace(x, sigma_vox, mode="reflect")`` on each
    channel. Negative at the centre of a bright blob.
    """
    if image.ndim not in (4, 5):
        raise ValueError(f"image must be (B, C, H, W) or (B, C, D, H, W), got shape {tuple(image.shape)}")
    if sigma_vox <= 0:
        raise ValueError(f"sigma_vox must be positive, got {sigma_vox}")
    gaussian, second_derivative = _scipy_gaussian_kernels(float(sigma_vox))
    axes = range(2, image.ndim)
    result = None
    for derivative_axis in axes:
        term = image
        for axis in axes:
            term = _filter_axis(term, second_derivative if axis == derivative_axis else gaussian, axis)
        result = term if result is None else result + term
    return result
