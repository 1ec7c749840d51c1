"""The dual-view spatial transformer (Famouri et al., Sec. 2.3, Fig. 1) and its ImageNet trunk weights.

A ResNet trunk cut after conv4_x (``layer3``) embeds the CC and the MLO with
the same weights; the two feature maps, concatenated along channels, feed a
localisation network (one conv5_x residual stage, global average pooling and
a dense layer) that predicts six affine parameters.

Conventions. The network's result is a 2x3 *pixel* affine in the sense of
:mod:`medrepro.spatial.warp`: it maps an output position on the MLO's pixel grid to
the CC position it samples (x = column, pixel-edge positions), so
``affine_warp(cc, matrix, mlo_shape)`` is the CC registered onto the MLO and
CC boxes reach the MLO grid through ``invert_affine(matrix)`` (see
:func:`carry_cc_boxes`).

The dense layer's six outputs ``[A | t]`` are an affine between *centred
frames*: a grid of (H, W) pixels has the centred position
``q = (p - (W/2, H/2)) / (max(H, W) / 2)`` (isotropic, so the longer side
spans [-1, 1]); ``[A | t]`` maps the MLO's centred positions to the CC's. A
rotation in that frame is a rotation in pixels on grids of any aspect ratio
(unlike ``F.affine_grid``'s theta, whose axes are scaled by each side). The
dense layer's bias starts at ``A = R(45 deg) = [[cos, -sin], [sin, cos]]``,
``t = 0`` and its weights are Glorot-initialised as in the paper
(``head_init="zero"`` starts them at zero instead, so that the prior holds
exactly for any input until training moves them): as a sampling matrix the prior turns the
CC's content 45 degrees counter-clockwise on screen about the grids' centres
(the pixel matrix equals ``medrepro.spatial.warp.rotation_matrix(45, image_centre(mlo),
scale=s_cc / s_mlo, in_centre=image_centre(cc))`` with ``s = max(H, W) / 2``;
a pure rotation when both grids share their longer side).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from medrepro.spatial import boxes, warp

from medrepro.data import sourcing
from medrepro.errors import ConfigError, DataError
from medrepro.provenance.hashing import sha256_file

PRIOR_ANGLE_DEG = 45.0

_STAGES = {18: ("basic", [2, 2, 2, 2]), 34: ("basic", [3, 4, 6, 3]), 50: ("bottleneck", [3, 4, 6, 3])}
_EXPANSION = {"basic": 1, "bottleneck": 4}  # output channels per plane of MONAI's (and torchvision's) blocks


def _resnet():
    """MONAI's ResNet module, imported when a network is built: importing MONAI takes seconds, and the
    frames, the prior and the box carrying below (used by evaluation, baselines and figures) do not need it."""
    from monai.networks.nets import resnet

    return resnet


def _block(name: str):
    resnet = _resnet()
    return {"basic": resnet.ResNetBlock, "bottleneck": resnet.ResNetBottleneck}[name]
_INPLANES = [64, 128, 256, 512]
_TRUNK_PARTS = ("conv1", "bn1", "layer1", "layer2", "layer3")

# torchvision's published ImageNet files; the name ends in the first 8 hex digits of the file's sha256.
IMAGENET_FILES = {
    18: "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    34: "https://download.pytorch.org/models/resnet34-b627a593.pth",
    50: "https://download.pytorch.org/models/resnet50-0676ba61.pth",
}


def _check_depth(depth: int) -> int:
    if depth not in _STAGES:
        raise ConfigError(f"ResNet depth must be one of {sorted(_STAGES)}, got {depth!r}")
    return depth


# --- The network ------------------------------------------------------------------------------


class Trunk(nn.Module):
    """A 2-D ResNet up to conv4_x (``layer3``); its parameter names are torchvision's (and MONAI's)."""

    def __init__(self, depth: int = 50):
        super().__init__()
        self.depth = _check_depth(depth)
        block, layers = _STAGES[depth]
        full = _resnet().ResNet(
            _block(block), layers, _INPLANES, spatial_dims=2, n_input_channels=3, conv1_t_size=7, conv1_t_stride=2,
            shortcut_type="B", feed_forward=False, bias_downsample=False,
        )  # fmt: skip
        for name in (*_TRUNK_PARTS, "act", "maxpool"):
            setattr(self, name, getattr(full, name))
        self.out_channels = _INPLANES[2] * _EXPANSION[block]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.act(self.bn1(self.conv1(image))))
        return self.layer3(self.layer2(self.layer1(x)))


def conv5_stage(depth: int, in_channels: int) -> nn.Sequential:
    """ResNet's conv5_x stage (stride 2, 512 planes) for ``in_channels`` inputs, MONAI blocks."""
    block_name, layers = _STAGES[_check_depth(depth)]
    block = _block(block_name)
    out_channels = _INPLANES[3] * block.expansion
    shortcut = nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=2, bias=False), nn.BatchNorm2d(out_channels)
    )
    stage = [block(in_channels, _INPLANES[3], spatial_dims=2, stride=2, downsample=shortcut)]
    stage += [block(out_channels, _INPLANES[3], spatial_dims=2) for _ in range(1, layers[3])]
    return nn.Sequential(*stage)


# The dense layer's weights: Glorot as in the paper, or zero (the prior exactly, whatever the input).
HEAD_INITS = ("glorot", "zero")


def prior_parameters(angle_deg: float = PRIOR_ANGLE_DEG) -> torch.Tensor:
    """The six centred-frame parameters ``[a11, a12, t1, a21, a22, t2]`` of the rotation prior."""
    cos, sin = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    return torch.tensor([cos, -sin, 0.0, sin, cos, 0.0], dtype=torch.float64)


def _glorot(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


class DualViewSpatialTransformer(nn.Module):
    """CC and MLO (B, 1, H, W) in 0..1 -> the pixel affine (B, 2, 3) sampling the CC onto the MLO grid.

    The views enter the trunk through :func:`imagenet_input` (three channels, ImageNet mean subtracted). When
    the two views' feature maps differ in size (grids of different shapes),
    the CC's is resampled bilinearly onto the MLO's before concatenation.
    """

    def __init__(self, depth: int = 50, prior_angle_deg: float = PRIOR_ANGLE_DEG, head_init: str = "glorot"):
        super().__init__()
        if head_init not in HEAD_INITS:
            raise ConfigError(f"head_init {head_init!r}: expected one of {', '.join(HEAD_INITS)}")
        self.trunk = Trunk(depth)
        stage = conv5_stage(depth, 2 * self.trunk.out_channels)
        head = nn.Linear(_INPLANES[3] * _EXPANSION[_STAGES[depth][0]], 6)
        self.localisation = nn.Sequential(stage, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
        _glorot(self.localisation)
        if head_init == "zero":  # the prior holds for any input until training moves the weights
            nn.init.zeros_(head.weight)
        with torch.no_grad():
            head.bias.copy_(prior_parameters(prior_angle_deg))

    def parameters_centred(self, cc: torch.Tensor, mlo: torch.Tensor) -> torch.Tensor:
        """The six centred-frame parameters (B, 6) before conversion to pixels."""
        cc_features = self.trunk(imagenet_input(cc))
        mlo_features = self.trunk(imagenet_input(mlo))
        if cc_features.shape[-2:] != mlo_features.shape[-2:]:
            cc_features = F.interpolate(cc_features, size=mlo_features.shape[-2:], mode="bilinear", align_corners=False)
        return self.localisation(torch.cat([cc_features, mlo_features], dim=1))

    def forward(self, cc: torch.Tensor, mlo: torch.Tensor) -> torch.Tensor:
        params = self.parameters_centred(cc, mlo)
        return centred_to_pixel(params.reshape(-1, 2, 3), cc.shape[-2:], mlo.shape[-2:])


def _three_channels(image: torch.Tensor) -> torch.Tensor:
    if image.ndim != 4 or image.shape[1] not in (1, 3):
        raise ValueError(f"a view must be (B, 1 or 3, H, W), got shape {tuple(image.shape)}")
    return image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image


# ImageNet's per-channel mean (RGB, intensities in 0..1): the only normalisation the paper applies (Sec. 4).
IMAGENET_MEAN = (0.485, 0.456, 0.406)


def imagenet_input(image: torch.Tensor) -> torch.Tensor:
    """A grey view (B, 1, H, W) in 0..1 (or already three channels) -> the trunk's input: RGB minus ImageNet's mean."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return _three_channels(image) - mean


# --- Frames and registration ------------------------------------------------------------------


def _centred_frame(shape, like: torch.Tensor) -> torch.Tensor:
    """The 3x3 map from pixel positions of an (H, W) grid to its centred frame (see the module doc)."""
    cx, cy = warp.image_centre(shape)
    half = max(cx, cy)
    return torch.tensor(
        [[1.0 / half, 0.0, -cx / half], [0.0, 1.0 / half, -cy / half], [0.0, 0.0, 1.0]],
        dtype=like.dtype, device=like.device,
    )  # fmt: skip


def _homogeneous(matrix: torch.Tensor) -> torch.Tensor:
    last = torch.zeros(*matrix.shape[:-2], 1, 3, dtype=matrix.dtype, device=matrix.device)
    last[..., 0, 2] = 1.0
    return torch.cat([matrix, last], dim=-2)


def centred_to_pixel(params: torch.Tensor, in_shape, out_shape) -> torch.Tensor:
    """Centred-frame affine (..., 2, 3) (output -> input) -> pixel affine of ``medrepro.spatial.warp``."""
    from_in = torch.linalg.inv(_centred_frame(in_shape, params))
    to_out = _centred_frame(out_shape, params)
    return (from_in @ _homogeneous(params) @ to_out)[..., :2, :]


def pixel_to_centred(matrix: torch.Tensor, in_shape, out_shape) -> torch.Tensor:
    """Inverse of :func:`centred_to_pixel`."""
    to_in = _centred_frame(in_shape, matrix)
    from_out = torch.linalg.inv(_centred_frame(out_shape, matrix))
    return (to_in @ _homogeneous(matrix) @ from_out)[..., :2, :]


def register(
    model: DualViewSpatialTransformer, cc: torch.Tensor, mlo: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the CC resampled bilinearly onto the MLO grid, the pixel affine (B, 2, 3)); differentiable."""
    matrix = model(cc, mlo)
    return warp.affine_warp(cc, matrix, mlo.shape[-2:]), matrix


def carry_cc_boxes(matrix: torch.Tensor, cc_boxes: torch.Tensor) -> torch.Tensor:
    """CC boxes (B, 4) or (B, K, 4) on the MLO grid: the inverse affine's corners, rectified."""
    inverse = warp.invert_affine(matrix)
    inverse = inverse.reshape(inverse.shape[0], *([1] * (cc_boxes.ndim - 2)), 2, 3)
    return boxes.transform_boxes(inverse, cc_boxes)


# --- ImageNet weights for the trunk -----------------------------------------------------------

_TRUNK_KEY = re.compile(r"^(conv1|bn1|layer[123])\.")
_UNUSED_KEY = re.compile(r"^(fc|layer4)\.")


def imagenet_state_for_trunk(state: dict) -> dict:
    """A torchvision ResNet state dict -> the :class:`Trunk`'s keys (conv1, bn1, layer1-3), fc/layer4 dropped.

    The trunk keeps torchvision's names, so the mapping strips a
    ``module.`` prefix (DataParallel files) and selects; a key that is
    neither trunk nor fc/layer4 raises ValueError (not a ResNet file).
    """
    mapped = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if _TRUNK_KEY.match(key):
            mapped[key] = value
        elif not _UNUSED_KEY.match(key):
            raise ValueError(f"unexpected key {key!r}: not a torchvision ResNet state dict")
    return mapped


def _read_state(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise DataError(path, f"cannot read trunk weights ({exc}); replace the file") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise DataError(path, "trunk weights must be a state dict; replace the file")
    return state


def _imagenet_file(depth: int, weights_dir: str | Path | None) -> Path:
    if weights_dir is None:
        raise ConfigError("ImageNet trunk weights need a weights directory to keep the downloaded file in")
    url = IMAGENET_FILES[_check_depth(depth)]
    target = Path(weights_dir) / url.rsplit("/", 1)[1]
    prefix = target.stem.rsplit("-", 1)[1]
    if not target.exists():
        try:
            sourcing.download(url, target)
        except DataError as exc:
            raise DataError(
                target, f"could not fetch {url} ({exc.problem}); download it by hand and put it at this path"
            ) from exc
    if not sha256_file(target).startswith(prefix):
        target.unlink()
        raise DataError(target, f"sha256 does not start with {prefix} (file removed); download {url} again")
    return target


def load_trunk_weights(trunk: Trunk, source: str | Path, weights_dir: str | Path | None = None) -> str:
    """Fill ``trunk`` from ``source``: "imagenet", "none" (keep random weights) or a local state-dict file.

    "imagenet" downloads torchvision's published file for the trunk's depth
    into ``weights_dir`` (once; the sha256 prefix in its name is checked).
    A local file may be a torchvision ResNet or a trunk's own state dict.
    Returns the file used ("none" when none). Every trunk key must be filled
    with a tensor of the same shape, else DataError.
    """
    if str(source) == "none":
        return "none"
    path = _imagenet_file(trunk.depth, weights_dir) if str(source) == "imagenet" else Path(source)
    if not path.is_file():
        raise DataError(path, "trunk weights file not found; give an existing file, 'imagenet' or 'none'")
    try:
        mapped = imagenet_state_for_trunk(_read_state(path))
    except ValueError as exc:
        raise DataError(path, f"{exc}; give a ResNet state dict") from exc
    _check_fits(trunk, mapped, path)
    trunk.load_state_dict(mapped, strict=True)
    return str(path)


def _check_fits(trunk: Trunk, mapped: dict, path: Path) -> None:
    """Fill absent batch-norm counters (older files lack them); any other gap or shape clash is an error."""
    for key, value in trunk.state_dict().items():
        if key not in mapped and key.endswith("num_batches_tracked"):
            mapped[key] = torch.zeros_like(value)
        elif key not in mapped:
            raise DataError(path, f"no weights for {key!r}; is it a ResNet{trunk.depth} file?")
        elif tuple(mapped[key].shape) != tuple(value.shape):
            raise DataError(
                path, f"{key!r} is {tuple(mapped[key].shape)}, the ResNet{trunk.depth} trunk needs {tuple(value.shape)}"
            )
    extra = sorted(set(mapped) - set(trunk.state_dict()))
    if extra:
        raise DataError(path, f"keys the ResNet{trunk.depth} trunk does not have, e.g. {extra[0]!r}")
