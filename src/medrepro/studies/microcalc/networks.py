"""The study's networks: the Detector and the Segmentator, one architecture in a *same* and a *valid* variant.

Both networks share the paper's architecture (its Sec. 2.4 and Fig. 3) and differ only in their training labels
(the Detector: a microcalcification anywhere in the patch; the Segmentator: the central pixel is one):

* six 3x3 convolutions of stride 1, a 2x2 max-pooling after the first and after the second;
* two fully connected layers of ``hidden`` (64) and 2 units, dropout (0.5) on the 64 units;
* batch normalisation after every layer but the last, placed between the layer and its activation as Ioffe &
  Szegedy do (convolution, batch norm, activation, then pooling or dropout). The batch norm makes a bias of the
  layers before it redundant (its mean subtraction removes any constant per channel), so they have none;
* He initialisation (normal, fan in, gain for ReLU) of every convolution and fully connected weight;
* softmax over the two logits: :func:`positive_probability`; training minimises the categorical cross-entropy of
  the logits (``torch.nn.functional.cross_entropy``, softmax included).

``variant`` is ``"same"`` (zero padding 1: the maps keep their size, a 49-pixel patch gives 12 x 12 features to
the first fully connected layer) or ``"valid"`` (no padding: 49 pixels shrink to 2 x 2, the paper's "from 49x49
patches to 2x2 features"). Pooling floors odd sizes, as the paper's 49 -> 2 x 2 requires (a ceiling would give
3 x 3). :func:`layer_sizes` gives the map size after each layer; :func:`check_patch` refuses an even ``N`` (the
patch has no central pixel) and any ``N`` for which a layer's output would be empty: the *valid* variant accepts
odd ``N >= 43`` (29 and 39, the paper's other sizes, leave nothing for the last convolutions), the *same* one odd
``N >= 5``.

The paper gives neither the number of filters nor the activation. The defaults, :data:`DEFAULT_WIDTHS` = 32, 32,
64, 64, 128, 128 with ReLU (the activation He initialisation is derived for), double the channels every two
convolutions, as VGG does while the resolution falls; 32 filters suffice for one grey channel of small bright spots,
and the last 128 give the *same* variant's first fully connected layer 128 x 12 x 12 x 64 = 1.2 M weights against
the *valid* variant's 128 x 2 x 2 x 64 = 33 k at N = 49: the contrast the paper's discussion credits for the *same*
variant's better accuracy. The convolutions hold 0.29 M weights. The inputs are the patch intensities as cut
(their scaling is the patches' business); the first batch norm normalises what the first convolution makes of them.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

VARIANTS = ("same", "valid")
DEFAULT_WIDTHS = (32, 32, 64, 64, 128, 128)
POOLED_CONVOLUTIONS = (1, 2)  # the convolutions (counted from 1) followed by a 2x2 max-pooling
HIDDEN, DROPOUT = 64, 0.5


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"convolution variant {variant!r} is neither 'same' nor 'valid'")


def layer_sizes(patch: int, variant: str) -> tuple[tuple[str, int], ...]:
    """(layer name, side of its square output) after each convolution and pooling of a ``patch`` x ``patch``
    input, in order: conv1, pool1, conv2, pool2, conv3 ... conv6. A size 0 is an empty map (and stays 0)."""
    _check_variant(variant)
    shrink = 0 if variant == "same" else 2
    sizes, side = [], patch
    for index in range(1, 7):
        side = max(side - shrink, 0)
        sizes.append((f"conv{index}", side))
        if index in POOLED_CONVOLUTIONS:
            side //= 2
            sizes.append((f"pool{index}", side))
    return tuple(sizes)


def smallest_patch(variant: str) -> int:
    """The smallest odd patch side whose every layer output is non-empty (same: 5, valid: 43)."""
    patch = 1
    while min(size for _, size in layer_sizes(patch, variant)) < 1:
        patch += 2
    return patch


def check_patch(patch: int, variant: str) -> int:
    """The side of the last convolution's output for a ``patch`` x ``patch`` input; ValueError for an even
    patch or one that a layer of this variant would reduce to nothing."""
    _check_variant(variant)
    if patch < 1 or patch % 2 == 0:
        raise ValueError(f"patch size N = {patch} must be odd and positive: the Segmentator labels the central pixel")
    for name, size in layer_sizes(patch, variant):
        if size < 1:
            raise ValueError(f"patch size N = {patch} is too small for the {variant!r} variant: its output after "
                             f"{name} would be empty; the {variant!r} variant needs N >= {smallest_patch(variant)}")
    return layer_sizes(patch, variant)[-1][1]


def he_initialise(module: nn.Module) -> None:
    """He et al.'s normal initialisation (std sqrt(2 / fan_in)) of every convolution and linear weight; zero biases;
    batch norm at identity (unit scale, zero shift)."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.modules.batchnorm._BatchNorm):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


def _convolution_layers(variant: str, widths: tuple[int, ...],
                        activation: Callable[[], nn.Module]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    channels = 1
    for index, width in enumerate(widths, start=1):
        layers += [nn.Conv2d(channels, width, 3, padding=1 if variant == "same" else 0, bias=False),
                   nn.BatchNorm2d(width), activation()]
        if index in POOLED_CONVOLUTIONS:
            layers.append(nn.MaxPool2d(2))
        channels = width
    return layers


class MicrocalcNet(nn.Module):
    """The shared architecture: (B, 1, N, N) patches -> (B, 2) logits (negative, positive).

    ``activation`` is a constructor of an element-wise module (``nn.ReLU``, ``nn.LeakyReLU``, ``lambda:
    nn.ELU(0.5)``), called once per layer. ``features`` holds the convolutions (each with its batch norm, activation
    and pooling), ``classifier`` the fully connected layers; :mod:`medrepro.studies.microcalc.dense` walks both.
    """

    def __init__(self, patch: int, variant: str = "same", widths: tuple[int, ...] = DEFAULT_WIDTHS,
                 hidden: int = HIDDEN, dropout: float = DROPOUT, activation: Callable[[], nn.Module] = nn.ReLU):
        super().__init__()
        if len(widths) != 6:
            raise ValueError(f"the architecture has six convolutions: give six widths, not {len(widths)}")
        final = check_patch(patch, variant)
        self.patch, self.variant, self.widths, self.hidden = patch, variant, tuple(widths), hidden
        self.features = nn.Sequential(*_convolution_layers(variant, self.widths, activation))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(self.widths[-1] * final * final, hidden, bias=False),
                                        nn.BatchNorm1d(hidden), activation(), nn.Dropout(dropout),
                                        nn.Linear(hidden, 2))
        he_initialise(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 1 or tuple(x.shape[-2:]) != (self.patch, self.patch):
            raise ValueError(f"expected (B, 1, {self.patch}, {self.patch}) patches, got {tuple(x.shape)}")
        return self.classifier(self.features(x))


class Detector(MicrocalcNet):
    """The Detector: P(a microcalcification lies in the patch), applied to patches overlapping by N/2 to find the
    candidate regions."""


class Segmentator(MicrocalcNet):
    """The Segmentator: P(the patch's central pixel belongs to a microcalcification), applied at every pixel of the
    candidate regions (densely: :func:`medrepro.studies.microcalc.dense.dense_probabilities`)."""


def positive_probability(logits: torch.Tensor) -> torch.Tensor:
    """(B,) softmax probability of the positive class from (B, 2) logits (or (B, 2, H, W) -> (B, H, W))."""
    return torch.softmax(logits, dim=1)[:, 1]
