"""Dense warping of images and label maps by a displacement field in pixels (voxels), in 2-D and 3-D.

For output pixel (x, y) (x = column, y = row) the warped image is the moving
image sampled at ``(x + d_x(x, y), y + d_y(x, y))``, where channel 0 of the
displacement is ``d_x`` and channel 1 is ``d_y``; in 3-D channel 2 is
``d_z`` along the slice axis (arrays are (D, H, W) = (z, y, x)). Sampling
positions are normalised to [-1, 1] with ``align_corners=True`` (pixel
centres at the ends), matching ``torch.nn.functional.grid_sample``, whose
"bilinear" mode is trilinear on 5-D input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def identity_grid(
    *shape: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Pixel coordinates of an (H, W) or (D, H, W) grid as a (1, n, ...) field: channel 0 = x, 1 = y (2 = z)."""
    if len(shape) not in (2, 3):
        raise ValueError(f"identity_grid takes (H, W) or (D, H, W), got {shape}")
    axes = [torch.arange(n, device=device, dtype=dtype) for n in shape]
    grids = torch.meshgrid(*axes, indexing="ij")  # (z,) y, x
    return torch.stack(grids[::-1]).unsqueeze(0)


def spatial_dims(tensor: torch.Tensor) -> int:
    """2 for a (B, C, H, W) tensor, 3 for (B, C, D, H, W); ValueError otherwise."""
    if tensor.ndim not in (4, 5):
        raise ValueError(f"expected (B, C, H, W) or (B, C, D, H, W), got shape {tuple(tensor.shape)}")
    return tensor.ndim - 2


def _check_pair(image: torch.Tensor, displacement: torch.Tensor) -> None:
    n = spatial_dims(image)
    if displacement.ndim != image.ndim or displacement.shape[1] != n:
        layout = "(B, 2, H, W)" if n == 2 else "(B, 3, D, H, W)"
        raise ValueError(f"displacement must be {layout}, got shape {tuple(displacement.shape)}")
    if image.shape[0] != displacement.shape[0] or image.shape[2:] != displacement.shape[2:]:
        raise ValueError(
            f"image {tuple(image.shape)} and displacement {tuple(displacement.shape)} differ in batch or size"
        )
    if min(image.shape[2:]) < 2:
        raise ValueError(f"image must be at least 2 pixels along every axis, got {tuple(image.shape[2:])}")


def sampling_grid(displacement: torch.Tensor) -> torch.Tensor:
    """Displacement (B, n, ...) in pixels -> ``grid_sample`` grid (B, ..., n) in [-1, 1], x first."""
    shape = displacement.shape[2:]
    coords = identity_grid(*shape, device=displacement.device, dtype=displacement.dtype) + displacement
    sizes = shape[::-1]  # x, y (, z)
    normalised = [2.0 * coords[:, axis] / (size - 1) - 1.0 for axis, size in enumerate(sizes)]
    return torch.stack(normalised, dim=-1)


def warp(
    image: torch.Tensor, displacement: torch.Tensor, mode: str = "bilinear", padding_mode: str = "zeros"
) -> torch.Tensor:
    """Warp (B, C, H, W) or (B, C, D, H, W) ``image`` by ``displacement``; outside the image reads 0."""
    _check_pair(image, displacement)
    grid = sampling_grid(displacement.to(image.dtype))
    return F.grid_sample(image, grid, mode=mode, padding_mode=padding_mode, align_corners=True)


def warp_onehot(onehot: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """Bi/trilinearly warp one-hot (or probability) channels; the result stays a distribution.

    Interpolation weights sum to one, so channels that sum to one at every
    pixel still do after warping, provided no weight falls outside the image.
    Zero padding would lose that mass near the border; ``padding_mode="border"``
    instead repeats the edge pixels, i.e. a position outside the image takes
    the label of the nearest edge pixel.
    """
    return warp(onehot, displacement, mode="bilinear", padding_mode="border")


def to_onehot(labels: torch.Tensor, n_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, H, W) or (B, D, H, W) integer labels in [0, n_classes) -> (B, n_classes, ...) one-hot."""
    if labels.ndim not in (3, 4):
        raise ValueError(f"labels must be (B, H, W) or (B, D, H, W), got shape {tuple(labels.shape)}")
    labels = labels.long()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise ValueError(
            f"labels span [{int(labels.min())}, {int(labels.max())}], "
            f"outside [0, {n_classes - 1}] for {n_classes} classes"
        )
    channels_last = F.one_hot(labels, n_classes)
    return channels_last.permute(0, labels.ndim, *range(1, labels.ndim)).to(dtype)


def warp_labels(labels: torch.Tensor, displacement: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Warp integer labels: one-hot warping, then the most probable class (ties go to the lower label)."""
    onehot = to_onehot(labels, n_classes, dtype=displacement.dtype)
    return warp_onehot(onehot, displacement).argmax(dim=1)
