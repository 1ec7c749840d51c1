"""The paper's losses composed from the kernel's functional ones (eqs. 1-5), and VoxelMorph's.

* Segmentation (eq. 1): the focal loss with gamma = 2 between each segmentation network's logits and its landmark
  regions (:func:`landmark_regions`: a cube of ``roi_mm`` around every landmark, the paper's 9 x 9 x 9 voxels at
  1 mm, kept in millimetres at other resolutions).
* Registration (eq. 5, all weights 1): ``-cc - I + L_smooth``, where cc is the local cross-correlation (eq. 2) and
  I the mutual information (eq. 3), both between the Laplacians of Gaussian of the warped moving and of the fixed
  volume, and L_smooth eq. 4.
  - eq. 2 as printed has no squared numerator and no square root, which leaves it unbounded where the LoG is flat
    (most of a brain's uniform tissue); MONAI's (squared) form is bounded in [0, 1]. ``lncc_form`` chooses: "monai"
    (the default) or "eq2". Either is averaged over voxels where the paper sums, which only rescales it.
  - eq. 4 sums first-difference gradient norms, though the text calls it "the L2 norm of the Laplacian": eq. 4 is
    what is implemented (:func:`medrepro.nn.losses.gradient_norm_smoothness`), averaged over voxels.
  - the LNCC window, the MI bins and the LoG width are not given: ``lncc_window``, ``mi_bins`` and ``log_sigma_mm``.
* VoxelMorph: ``-LNCC`` of the intensities (MONAI's, window 9) plus ``lambda`` times the mean squared gradient of
  the field (VoxelMorph's ``Grad('l2')``, MONAI's ``DiffusionLoss``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from medrepro.nn import losses
from medrepro.spatial.warp import warp


@dataclass(frozen=True)
class RegistrationLoss:
    """eq. 5's terms and their settings."""

    lncc_window: int = 9
    lncc_form: str = "monai"
    mi_bins: int = 32
    log_sigma_mm: float = 2.0
    voxel_mm: float = 1.0
    smooth_weight: float = 1.0

    def __post_init__(self):
        if self.lncc_form not in ("monai", "eq2"):
            raise ValueError(f"lncc_form must be 'monai' or 'eq2', got {self.lncc_form!r}")

    def __call__(self, warped: torch.Tensor, fixed: torch.Tensor, displacement: torch.Tensor) -> dict:
        sigma = self.log_sigma_mm / self.voxel_mm
        warped_log = _channel_mean(losses.laplacian_of_gaussian(warped, sigma))
        fixed_log = _channel_mean(losses.laplacian_of_gaussian(fixed, sigma))
        cc = losses.local_cross_correlation(warped_log, fixed_log, window=self.lncc_window,
                                            squared=self.lncc_form == "monai")
        mi = losses.mutual_information(*_unit_range(warped_log, fixed_log), bins=self.mi_bins)
        smooth = losses.gradient_norm_smoothness(displacement)
        return {"lncc": cc, "mi": mi, "smooth": smooth, "registration": -cc - mi + self.smooth_weight * smooth}


def _unit_range(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both images mapped by one linear map onto [0, 1] (the MI's Parzen bins span it); the range is a constant
    of each step, not a path for the gradient."""
    with torch.no_grad():
        dims = tuple(range(1, a.ndim))
        low = torch.minimum(a.amin(dim=dims, keepdim=True), b.amin(dim=dims, keepdim=True))
        high = torch.maximum(a.amax(dim=dims, keepdim=True), b.amax(dim=dims, keepdim=True))
        scale = (high - low).clamp_min(1e-8)
    return (a - low) / scale, (b - low) / scale


def _channel_mean(volume: torch.Tensor) -> torch.Tensor:
    return volume.mean(dim=1, keepdim=True)


def voxelmorph_loss(warped: torch.Tensor, fixed: torch.Tensor, displacement: torch.Tensor, window: int = 9,
                    smooth_weight: float = 1.0) -> dict:
    from monai.losses import DiffusionLoss, LocalNormalizedCrossCorrelationLoss

    similarity = LocalNormalizedCrossCorrelationLoss(spatial_dims=3, kernel_size=window)(warped, fixed)
    smooth = DiffusionLoss()(displacement)
    return {"lncc": -similarity, "smooth": smooth, "registration": similarity + smooth_weight * smooth}


def landmark_regions(points: np.ndarray, shape: tuple, roi_mm: float, voxel_mm: float) -> np.ndarray:
    """A (z, y, x) float32 mask: 1 in the cube of side ``roi_mm`` centred on each (x, y, z) landmark."""
    mask = np.zeros(shape, dtype=np.float32)
    half = max(roi_mm / voxel_mm / 2.0, 0.5)
    for x, y, z in np.asarray(points, dtype=float):
        lo = [int(np.ceil(c - half)) for c in (z, y, x)]
        hi = [int(np.floor(c + half)) + 1 for c in (z, y, x)]
        if all(h > 0 for h in hi):
            mask[tuple(slice(max(0, l), h) for l, h in zip(lo, hi))] = 1.0
    return mask


def wssamnet_loss(outputs: dict, moving: torch.Tensor, fixed: torch.Tensor, moving_regions: torch.Tensor | None,
                  fixed_regions: torch.Tensor | None, registration: RegistrationLoss) -> dict:
    """eq. 5 plus, with attention, eq. 1 for each segmentation (all weights 1): the ``total`` trained end to end."""
    displacement = outputs["displacement"]
    terms = registration(warp(moving, displacement), fixed, displacement)
    total = terms["registration"]
    if "moving_logits" in outputs:
        terms["focal_moving"] = losses.focal_loss(outputs["moving_logits"], moving_regions, gamma=2.0)
        terms["focal_fixed"] = losses.focal_loss(outputs["fixed_logits"], fixed_regions, gamma=2.0)
        total = total + terms["focal_moving"] + terms["focal_fixed"]
    terms["total"] = total
    return terms
