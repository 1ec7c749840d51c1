"""Tissue patches cut from a magnified base image, as evaluated and as augmented for training.

A sample at native crop position (row, col) lies at (row / f, col / f) in the image magnified by 1/f; its patch
is the ``patch`` x ``patch`` square around that point (pixels ``centre - patch // 2`` to ``centre + patch // 2 -
1``). Images are padded with the background's optical density, so that patches at the crop's border exist.

Training patches are augmented as the paper lists (brightness, rotation, offset, flipping, cropping): a random
rotation by any angle, a mirror, an offset of up to ``offset`` pixels, a crop of 85-100 % of the field resized
to the patch, and a brightness shift of the optical density; drawn from the run's seeded generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def magnified_position(native: np.ndarray, factor: float) -> np.ndarray:
    """Native crop coordinates -> the nearest pixel of the image magnified by 1/``factor``."""
    return np.floor(np.asarray(native, dtype=np.float64) / factor).astype(np.int64)


def pad(images: np.ndarray, patch: int, fill: float) -> np.ndarray:
    """(N, H, W) images padded by ``patch`` on every side with ``fill``."""
    return np.pad(images, ((0, 0), (patch, patch), (patch, patch)), constant_values=fill)


def cut(padded: np.ndarray, index: np.ndarray, rows: np.ndarray, cols: np.ndarray, patch: int) -> np.ndarray:
    """Patches (n, patch, patch) of padded images ``padded[index]`` around magnified (rows, cols)."""
    windows = np.lib.stride_tricks.sliding_window_view(padded, (patch, patch), axis=(1, 2))
    half = patch // 2
    return np.ascontiguousarray(windows[np.asarray(index), np.asarray(rows) + patch - half,
                                        np.asarray(cols) + patch - half], dtype=np.float32)


@dataclass(frozen=True)
class Augmentation:
    """Ranges of the training augmentation (see the module docstring)."""

    rotation: bool = True
    flip: bool = True
    offset: int = 4
    crop: float = 0.15
    brightness: float = 0.1

    @classmethod
    def from_section(cls, section: dict) -> "Augmentation":
        return cls(**section)


def augmented(padded: torch.Tensor, index: np.ndarray, rows: np.ndarray, cols: np.ndarray, patch: int,
              augmentation: Augmentation, rng: np.random.Generator) -> torch.Tensor:
    """Augmented patches (n, 1, patch, patch) sampled from ``padded`` (N, 1, H, W) by one affine map each."""
    n = len(index)
    angle = rng.uniform(0, 2 * np.pi, n) if augmentation.rotation else np.zeros(n)
    mirror = np.where(rng.uniform(size=n) < 0.5, -1.0, 1.0) if augmentation.flip else np.ones(n)
    scale = 1.0 - rng.uniform(0.0, augmentation.crop, n)
    shift = rng.integers(-augmentation.offset, augmentation.offset + 1, (n, 2)) if augmentation.offset else \
        np.zeros((n, 2))
    brightness = rng.uniform(-augmentation.brightness, augmentation.brightness, n)
    height, width = padded.shape[-2:]
    # Patch pixel (u, v) in [-1, 1] -> source pixel: rotate, mirror, scale, then move to the sample's centre.
    centre_r = rows + patch + shift[:, 0] - 0.5  # the patch's centre lies between its two middle pixels
    centre_c = cols + patch + shift[:, 1] - 0.5
    half = patch / 2 * scale
    cos, sin = np.cos(angle), np.sin(angle)
    theta = np.zeros((n, 2, 3))
    theta[:, 0, 0], theta[:, 0, 1] = cos * half * mirror / (width / 2), -sin * half / (width / 2)
    theta[:, 1, 0], theta[:, 1, 1] = sin * half * mirror / (height / 2), cos * half / (height / 2)
    theta[:, 0, 2] = (centre_c + 0.5) / (width / 2) - 1
    theta[:, 1, 2] = (centre_r + 0.5) / (height / 2) - 1
    theta_t = torch.as_tensor(theta, dtype=padded.dtype, device=padded.device)
    grid = F.affine_grid(theta_t, (n, 1, patch, patch), align_corners=False)
    sources = padded[torch.as_tensor(index, device=padded.device)]
    out = F.grid_sample(sources, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out + torch.as_tensor(brightness, dtype=padded.dtype, device=padded.device)[:, None, None, None]
