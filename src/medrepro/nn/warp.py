"""Dense warping of images and label maps by a displacement field in pixels.

For output pixel (x, y) (x = column, y = row) the warped image is the moving
image sampled at ``(x + d_x(x, y), y + d_y(x, y))``, where channel 0 of the
displacement is ``d_x`` and channel 1 is ``d_y``. Sampling positions are
normalised to [-1, 1] with ``align_corners=True`` (pixel centres at the ends),
matching ``torch.nn.functional.grid_sample``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def identity_grid(
    height: int, width: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Pixel coordinates as a (1, 2, H, W) field: channel 0 = x (column), 1 = y (row)."""
    ys = torch.arange(height, device=device, dtype=dtype)
    xs = torch.arange(width, device=device, dtype=dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y]).unsqueeze(0)


def _check_pair(image: torch.Tensor, displacement: torch.Tensor) -> None:
    if image.ndim != 4:
        raise ValueError(f"image must be (B, C, H, W), got shape {tuple(image.shape)}")
    if displacement.ndim != 4 or displacement.shape[1] != 2:
        raise ValueError(f"displacement must be (B, 2, H, W), got shape {tuple(displacement.shape)}")
    if image.shape[0] != displacement.shape[0] or image.shape[-2:] != displacement.shape[-2:]:
        raise ValueError(
            f"image {tuple(image.shape)} and displacement {tuple(displacement.shape)} differ in batch or size"
        )
    if min(image.shape[-2:]) < 2:
        raise ValueError(f"image must be at least 2x2 pixels, got {tuple(image.shape[-2:])}")


def sampling_grid(displacement: torch.Tensor) -> torch.Tensor:
    """Displacement (B, 2, H, W) in pixels -> ``grid_sample`` grid (B, H, W, 2) in [-1, 1]."""
    height, width = displacement.shape[-2:]
    coords = identity_grid(height, width, displacement.device, displacement.dtype) + displacement
    x = 2.0 * coords[:, 0] / (width - 1) - 1.0
    y = 2.0 * coords[:, 1] / (height - 1) - 1.0
    return torch.stack([x, y], dim=-1)


def warp(
    image: torch.Tensor, displacement: torch.Tensor, mode: str = "bilinear", padding_mode: str = "zeros"
) -> torch.Tensor:
    """Warp (B, C, H, W) ``image`` by ``displacement`` (B, 2, H, W); outside the image reads 0."""
    _check_pair(image, displacement)
    grid = sampling_grid(displacement.to(image.dtype))
    return F.grid_sample(image, grid, mode=mode, padding_mode=padding_mode, align_corners=True)


def warp_onehot(onehot: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """Bilinearly warp one-hot (or probability) channels; the result stays a distribution.

    Bilinear weights sum to one, so channels that sum to one at every pixel
    still do after warping, provided no weight falls outside the image. Zero
    padding would lose that mass near the border; ``padding_mode="border"``
    instead repeats the edge pixels, i.e. a position outside the image takes
    the label of the nearest edge pixel (background in a chest radiograph).
    """
    return warp(onehot, displacement, mode="bilinear", padding_mode="border")


def to_onehot(labels: torch.Tensor, n_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, H, W) integer labels in [0, n_classes) -> (B, n_classes, H, W) one-hot."""
    if labels.ndim != 3:
        raise ValueError(f"labels must be (B, H, W), got shape {tuple(labels.shape)}")
    labels = labels.long()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise ValueError(
            f"labels span [{int(labels.min())}, {int(labels.max())}], "
            f"outside [0, {n_classes - 1}] for {n_classes} classes"
        )
    return F.one_hot(labels, n_classes).permute(0, 3, 1, 2).to(dtype)


def warp_labels(labels: torch.Tensor, displacement: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Warp (B, H, W) integer labels: bilinear one-hot warping, then the most probable class."""
    onehot = to_onehot(labels, n_classes, dtype=displacement.dtype)
    return warp_onehot(onehot, displacement).argmax(dim=1)
