"""The study's networks: a VGG-style tissue classifier and the fully convolutional heatmap regression model.

* :class:`TissueClassifier` (after Simonyan & Zisserman): blocks of two 3x3 convolutions with ReLU and a 2x2
  max-pooling, channels doubling from ``width``, until the patch is 4 x 4; then two fully connected layers
  (``hidden`` units, dropout) and two logits (findings absent, present). The paper names VGG but no depth:
  ``blocks`` follows from the patch size (32 px: 3 blocks; 128 px: 5).
* :class:`HeatmapNet` (after Bulat & Tzimiropoulos): convolutions without fully connected layers, max-pooled from
  the downsampled mammogram to the 32 x 32 heatmap; with ``local_results`` the x0.5 classifier's aggregated
  32 x 32 grid is concatenated to its last features and extra convolutions follow (the paper's Fig. 2).

Inputs are optical density, centred and scaled by :data:`OD_CENTRE` and :data:`OD_SCALE` inside the networks.
"""

from __future__ import annotations

import math

import torch
from torch import nn

OD_CENTRE, OD_SCALE = 2.0, 1.0  # optical density of the film's middle grey, and its typical spread


def _conv_block(channels_in: int, channels_out: int, convolutions: int = 2) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i in range(convolutions):
        layers += [nn.Conv2d(channels_in if i == 0 else channels_out, channels_out, 3, padding=1), nn.ReLU()]
    return layers + [nn.MaxPool2d(2)]


class TissueClassifier(nn.Module):
    """VGG-style patch classifier: (B, 1, P, P) optical density -> (B, 2) logits."""

    def __init__(self, patch: int, width: int = 16, hidden: int = 128, dropout: float = 0.5):
        super().__init__()
        blocks = int(round(math.log2(patch / 4)))
        if patch < 8 or 4 * 2 ** blocks != patch:
            raise ValueError(f"patch size {patch} must be 4 times a power of two (8, 16, 32, 64, 128, ...)")
        layers, channels = [], 1
        for b in range(blocks):
            out = width * 2 ** min(b, 3)
            layers += _conv_block(channels, out)
            channels = out
        self.patch = patch
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(channels * 16, hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features((x - OD_CENTRE) / OD_SCALE))


class HeatmapNet(nn.Module):
    """(B, 1, S, S) downsampled mammogram [, (B, 1, 32, 32) local results] -> (B, 1, 32, 32) heatmap."""

    def __init__(self, input_size: int, grid: int = 32, width: int = 16, local_results: bool = False):
        super().__init__()
        pools = int(round(math.log2(input_size / grid)))
        if pools < 0 or grid * 2 ** pools != input_size:
            raise ValueError(f"heatmap input {input_size} must be the {grid}-pixel grid times a power of two")
        layers, channels = [], 1
        for p in range(pools):
            out = width * 2 ** min(p, 2)
            layers += _conv_block(channels, out)
            channels = out
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.local_results = local_results
        extra = channels + (1 if local_results else 0)
        final: list[nn.Module] = []
        if local_results:  # the extra convolutions between the aggregated results and the top-level heatmap
            final += [nn.Conv2d(extra, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1),
                      nn.ReLU()]
            extra = channels
        final.append(nn.Conv2d(extra, 1, 1))
        self.head = nn.Sequential(*final)

    def forward(self, x: torch.Tensor, local: torch.Tensor | None = None) -> torch.Tensor:
        features = self.features((x - OD_CENTRE) / OD_SCALE)
        if self.local_results:
            if local is None:
                raise ValueError("this heatmap model concatenates the local results: pass them")
            features = torch.cat([features, local], dim=1)
        return self.head(features)
