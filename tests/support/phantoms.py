"""Small chest-like test images and a stand-in registration model, shared by the tests."""

import numpy as np
import torch
from scipy import ndimage as ndi


def make_phantom(size: int = 112, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Chest-like phantom: body ellipse, lungs (1, 2), heart (3), smooth texture."""
    rng = np.random.default_rng(seed)
    r, c = np.mgrid[0:size, 0:size] / size

    def ellipse(cr, cc, ar, ac):
        return ((r - cr) / ar) ** 2 + ((c - cc) / ac) ** 2 <= 1

    labels = np.zeros((size, size), np.uint8)
    labels[ellipse(0.47, 0.33, 0.24, 0.11)] = 1
    labels[ellipse(0.47, 0.67, 0.24, 0.11)] = 2
    labels[ellipse(0.62, 0.55, 0.10, 0.09)] = 3
    body = ellipse(0.5, 0.5, 0.40, 0.33)
    texture = ndi.gaussian_filter(rng.standard_normal((size, size)), size / 40)
    texture /= np.abs(texture).max()
    image = np.where(body, 0.55 + 0.15 * texture, 0.0)
    image = np.where(np.isin(labels, (1, 2)), 0.25 + 0.1 * texture, image)
    image = np.where(labels == 3, 0.8 + 0.05 * texture, image)
    return np.clip(ndi.gaussian_filter(image, 1.0), 0, 1).astype(np.float32), labels


class ConstantField(torch.nn.Module):
    """A stand-in registration model: the same displacement (d_x, d_y) for every pair, recording its inputs."""

    def __init__(self, dx: float = 0.0, dy: float = 0.0):
        super().__init__()
        self.dx, self.dy = dx, dy
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        self.calls.append((moving[:, 0].numpy().copy(), fixed[:, 0].numpy().copy()))
        field = torch.zeros(moving.shape[0], 2, *moving.shape[-2:])
        field[:, 0], field[:, 1] = self.dx, self.dy
        return field
