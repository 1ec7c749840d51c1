"""Inference with a trained registration network: displacements, and images and label maps warped by them.

Masks are only needed for training; inference uses the two images alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medrepro.nn.device import module_device, place
from medrepro.studies.chest.networks import VectorCNN
from medrepro.studies.chest.registration import REGISTRATION_KIND, image_tensor
from medrepro.nn.training.checkpoint import load_model
from medrepro.spatial.warp import warp, warp_labels

__all__ = ["load_registration_model", "register_batch", "warp_label_maps", "warp_images"]


def load_registration_model(path: str | Path, device: str | torch.device = "cpu") -> VectorCNN:
    """Rebuild a trained VectorCNN in eval mode; its training configuration is ``model.config``."""
    model, config = load_model(path, kinds=REGISTRATION_KIND, build=lambda _: VectorCNN(),
                               what="registration model file", remedy=None, fits="VectorCNN", device=device)
    model.config = dict(config)
    return model


def register_batch(
    model: VectorCNN,
    moving: np.ndarray,
    fixed: np.ndarray,
    batch_size: int = 32,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Displacements (P, 2, S, S) float32, in pixels, for (P, S, S) moving/fixed image stacks.

    Runs the model in eval mode (no dropout) without gradients, ``batch_size``
    pairs at a time, on ``device`` (default: where the model's weights are).
    Channel 0 is the displacement along x (columns), channel 1 along y (rows).
    """
    if moving.shape != fixed.shape or moving.ndim != 3:
        raise ValueError(f"moving {moving.shape} and fixed {fixed.shape} must be equal (P, S, S) stacks")
    device = module_device(model, device)
    model = place(model, device).eval()
    out = np.empty((len(moving), 2, *moving.shape[1:]), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(moving), batch_size):
            chunk = slice(start, start + batch_size)
            displacement = model(image_tensor(moving[chunk], device), image_tensor(fixed[chunk], device))
            out[chunk] = displacement.cpu().numpy()
    return out


def warp_label_maps(labels: np.ndarray, displacement: np.ndarray, n_classes: int, batch_size: int = 64) -> np.ndarray:
    """Warp (P, S, S) label maps by (P, 2, S, S) displacements; returns uint8 (P, S, S).

    One-hot channels are warped bilinearly and each pixel takes the most
    probable class (ties go to the lower label), see ``medrepro.spatial.warp``.
    """
    _check_displacement(labels, displacement)
    out = np.empty(labels.shape, dtype=np.uint8)
    with torch.no_grad():
        for start in range(0, len(labels), batch_size):
            chunk = slice(start, start + batch_size)
            chunk_labels = torch.from_numpy(labels[chunk].astype(np.int64))
            chunk_field = torch.from_numpy(np.ascontiguousarray(displacement[chunk], dtype=np.float32))
            warped = warp_labels(chunk_labels, chunk_field, n_classes)
            out[chunk] = warped.numpy().astype(np.uint8)
    return out


def warp_images(images: np.ndarray, displacement: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Warp (P, S, S) images bilinearly by (P, 2, S, S) displacements (0 outside); float32 (P, S, S)."""
    _check_displacement(images, displacement)
    out = np.empty(images.shape, dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            chunk = slice(start, start + batch_size)
            warped = warp(image_tensor(images[chunk], torch.device("cpu")),
                          torch.from_numpy(np.ascontiguousarray(displacement[chunk], dtype=np.float32)))
            out[chunk] = warped[:, 0].numpy()
    return out


def _check_displacement(stack: np.ndarray, displacement: np.ndarray) -> None:
    if stack.ndim != 3 or displacement.shape != (len(stack), 2, *stack.shape[1:]):
        raise ValueError(f"displacement {displacement.shape} does not fit a (P, S, S) stack {stack.shape}")
