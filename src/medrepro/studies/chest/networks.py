"""The two networks of AC-RegNet.

``VectorCNN`` is the registration U-Net that maps a (moving, fixed) image pair
to a dense displacement field; ``MaskAutoencoder`` is the anatomy prior whose
32-d code compares a warped mask with the fixed mask. Both follow the
architecture of the authors' public PyTorch implementation (see
``shared/reference/README.md``).

Displacement convention used throughout the package: a field of shape
(B, 2, H, W) in pixels, channel 0 the displacement along x (columns),
channel 1 along y (rows). ``medrepro.spatial.warp.warp`` samples the moving image
at ``(x + d_x, y + d_y)`` for output pixel ``(x, y)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ENCODER_CHANNELS = (16, 32, 64, 128)
DECODER_CHANNELS = (64, 32, 16)
DOWNSAMPLING = 8  # three 2x2 poolings (U-Net) or three stride-2 convolutions (autoencoder)
DROPOUT_P = 0.5


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=bias)


def check_divisible(height: int, width: int, what: str = "input") -> None:
    """Raise ValueError unless both sides are divisible by 8 (three halvings)."""
    if height % DOWNSAMPLING or width % DOWNSAMPLING:
        raise ValueError(
            f"{what} size {height}x{width} is not divisible by {DOWNSAMPLING}; "
            f"the networks halve the resolution three times"
        )


class _ConvELUConv(nn.Module):
    """conv3x3 - ELU - conv3x3 (no activation after the second conv)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = _conv3x3(in_channels, out_channels)
        self.conv2 = _conv3x3(out_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.elu(self.conv1(x)))


class _UpAddBlock(nn.Module):
    """Nearest x2 upsample + conv, ADD the skip, ELU, conv-ELU-conv, ELU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.up_conv = _conv3x3(in_channels, out_channels)
        self.body = _ConvELUConv(out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up_conv(F.interpolate(x, scale_factor=2, mode="nearest"))
        x = F.elu(x + skip)
        return F.elu(self.body(x))


class VectorCNN(nn.Module):
    """Registration U-Net: (moving, fixed) -> displacement in pixels (B, 2, H, W).

    Encoder: four conv-ELU-conv blocks (16, 32, 64, 128 channels), ELU and 2x2
    average pooling between them. Decoder: three blocks (64, 32, 16), each
    preceded by dropout (p=0.5, active in training mode only) and merging the
    skip connection by addition. The skip is the encoder block output before
    its ELU. Output: conv3x3 to two channels without activation. No batch
    norm, so the prediction for one pair never depends on the rest of the batch.
    """

    def __init__(self, in_channels: int = 2):
        super().__init__()
        self.encoder = nn.ModuleList()
        previous = in_channels
        for channels in ENCODER_CHANNELS:
            self.encoder.append(_ConvELUConv(previous, channels))
            previous = channels
        self.decoder = nn.ModuleList()
        for channels in DECODER_CHANNELS:
            self.decoder.append(_UpAddBlock(previous, channels))
            previous = channels
        self.out_conv = _conv3x3(previous, 2)

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        if moving.shape != fixed.shape or moving.ndim != 4 or moving.shape[1] != 1:
            raise ValueError(
                f"moving and fixed must both be (B, 1, H, W); got {tuple(moving.shape)} and {tuple(fixed.shape)}"
            )
        check_divisible(moving.shape[-2], moving.shape[-1], "image")
        x = torch.cat([moving, fixed], dim=1)
        skips = []
        for level, block in enumerate(self.encoder):
            x = block(x)
            if level < len(self.encoder) - 1:
                skips.append(x)
                x = F.avg_pool2d(F.elu(x), 2)
        x = F.elu(x)
        for block, skip in zip(self.decoder, reversed(skips)):
            x = F.dropout(x, p=DROPOUT_P, training=self.training)
            x = block(x, skip)
        return self.out_conv(x)


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    # The conv bias is redundant in front of batch norm.
    return nn.Sequential(
        _conv3x3(in_channels, out_channels, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


def _up_conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), _conv_bn_relu(in_channels, out_channels))


class MaskAutoencoder(nn.Module):
    """Convolutional autoencoder of one-hot label maps with a ``code_dim`` code.

    Encoder: conv stride 2 (16) - conv (16) - conv stride 2 (32) - conv (32) -
    conv stride 2 (1 channel), each followed by batch norm and ReLU; the
    (size/8)^2 map is flattened and linearly projected to the code. Decoder:
    linear - ReLU - reshape to (1, size/8, size/8) - three [nearest x2
    upsample, conv, batch norm, ReLU] blocks with 32, 16, 16 channels - conv to
    ``n_classes`` logits (no batch norm).
    """

    def __init__(self, n_classes: int, size: int, code_dim: int = 32):
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"n_classes must be at least 2, got {n_classes}")
        check_divisible(size, size, "mask")
        self.n_classes = n_classes
        self.size = size
        self.code_dim = code_dim
        self.bottleneck = size // DOWNSAMPLING
        self.encoder_cnn = nn.Sequential(
            _conv_bn_relu(n_classes, 16, stride=2),
            _conv_bn_relu(16, 16),
            _conv_bn_relu(16, 32, stride=2),
            _conv_bn_relu(32, 32),
            _conv_bn_relu(32, 1, stride=2),
        )
        self.encoder_linear = nn.Linear(self.bottleneck**2, code_dim)
        self.decoder_linear = nn.Linear(code_dim, self.bottleneck**2)
        self.decoder_cnn = nn.Sequential(
            _up_conv_bn_relu(1, 32),
            _up_conv_bn_relu(32, 16),
            _up_conv_bn_relu(16, 16),
            _conv3x3(16, n_classes),
        )

    def encode(self, onehot: torch.Tensor) -> torch.Tensor:
        """(B, n_classes, size, size) one-hot or probabilities -> (B, code_dim)."""
        expected = (self.n_classes, self.size, self.size)
        if onehot.ndim != 4 or tuple(onehot.shape[1:]) != expected:
            raise ValueError(f"expected (B, {', '.join(map(str, expected))}) input, got {tuple(onehot.shape)}")
        features = self.encoder_cnn(onehot)
        return self.encoder_linear(features.flatten(start_dim=1))

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """(B, code_dim) -> (B, n_classes, size, size) logits."""
        x = F.relu(self.decoder_linear(code))
        x = x.view(-1, 1, self.bottleneck, self.bottleneck)
        return self.decoder_cnn(x)

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(onehot))

