"""Pixel-wise saliency (the paper's Figs. 5 and 6) and how much of it falls on the finding.

The paper shows the magnitude of the gradient of the entropy term with respect to the input pixels, and says
that without a label the model's own is substituted. So by default the saliency of a patch is
``|d CE(p, y_hat) / d x|``, the cross-entropy with the predicted label ``y_hat``; the variant ``entropy`` uses the
prediction's entropy ``H = -sum_y p(y) log p(y)`` instead.

Full-scale saliency (:func:`full_saliency`): the x0.5 classifier's patches on a fixed grid over a mammogram are
kept only where they are predicted positive and lie inside the predicted heatmap (its value there at least
``threshold`` times its maximum), and their saliency is added into an image of the mammogram at x0.5, at the
patch's place. :func:`mass_inside` measures the share of a map's mass inside the annotation: for the saliency,
the heatmap alone, and a uniform map (the annotation's share of the image) alike.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from medrepro.studies.mammo_tissue import patches

MODES = ("cross_entropy", "entropy")


def patch_saliency(model: torch.nn.Module, images: torch.Tensor, mode: str = "cross_entropy"
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(|gradient| (n, P, P), P(findings) (n,)) of a batch of patches (n, 1, P, P); the model in eval mode."""
    if mode not in MODES:
        raise ValueError(f"saliency mode must be one of {MODES}, got {mode!r}")
    x = images.detach().clone().requires_grad_(True)
    logits = model(x)
    log_p = F.log_softmax(logits, dim=1)
    if mode == "cross_entropy":
        term = F.nll_loss(log_p, logits.argmax(dim=1), reduction="sum")
    else:
        term = -(log_p.exp() * log_p).sum()
    (gradient,) = torch.autograd.grad(term, x)  # samples are independent: the sum's gradient is each one's
    return gradient.abs()[:, 0].detach(), log_p.exp()[:, 1].detach()


def full_saliency(model: torch.nn.Module, padded: np.ndarray, heatmap: np.ndarray, factor: float, patch: int,
                  rows: np.ndarray, cols: np.ndarray, base: int, size: int, threshold: float,
                  mode: str = "cross_entropy", device: torch.device | str = "cpu") -> tuple[np.ndarray, int]:
    """The saliency image (size x size: the ``base``-pixel mammogram at 1/``factor``) of one padded magnified
    mammogram from the patches at native (rows, cols), and how many patches it kept."""
    r, c = patches.magnified_position(rows, factor), patches.magnified_position(cols, factor)
    cut = torch.from_numpy(patches.cut(padded[None], np.zeros(len(r), dtype=np.int64), r, c, patch))[:, None]
    gradient, probability = patch_saliency(model, cut.to(device), mode)
    grid = heatmap.shape[0]
    cell = tuple(np.clip((np.asarray(v) * grid) // base, 0, grid - 1).astype(int) for v in (rows, cols))
    inside = heatmap[cell] >= threshold * max(float(heatmap.max()), 1e-12)
    keep = (probability.cpu().numpy() > 0.5) & inside & (heatmap.max() > 0)
    canvas = np.zeros((size + 2 * patch, size + 2 * patch), dtype=np.float64)
    half = patch // 2
    for k in np.flatnonzero(keep):
        top, left = r[k] + patch - half, c[k] + patch - half
        canvas[top:top + patch, left:left + patch] += gradient[k].cpu().numpy()
    return canvas[patch:patch + size, patch:patch + size], int(keep.sum())


def mass_inside(image: np.ndarray, region: np.ndarray) -> float:
    """The share of a non-negative map's mass inside ``region`` (NaN for an empty map)."""
    image = np.clip(np.asarray(image, dtype=np.float64), 0, None)
    total = image.sum()
    return float(image[region].sum() / total) if total > 0 else float("nan")
