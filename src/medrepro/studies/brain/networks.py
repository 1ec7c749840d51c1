"""The study's networks: WSSAMNet (Sec. 3, Fig. 1), WSSAMNet without its attention branch, and VoxelMorph.

Every field a network returns is a displacement in voxels on the fixed grid in the kernel's convention
(:mod:`medrepro.spatial.warp`: channel 0 = x, 1 = y, 2 = z; warped(p) = moving(p + u(p))).

* **WSSAMNet**: "All the U-Nets consist of three levels. The number of feature maps starts from 8 and gets doubled":
  MONAI's ``UNet`` with channels (8, 16, 32) and two stride-2 levels, for each of the three. Two segment the
  landmark regions of the moving and of the fixed volume (one logit per voxel); each volume times the sigmoid of
  its segmentation is its attentive volume; the two attentive volumes, concatenated, go into the registration
  U-Net, whose three output channels are the displacement (the paper integrates nothing: a plain displacement).
* **WSSAMNet without attention** (beyond the paper): the same registration U-Net on the raw volumes.
* **VoxelMorph** (Balakrishnan et al., TMI 2019; Dalca et al. 2019): MONAI's ``VoxelMorphUNet`` backbone predicting
  a stationary velocity field, integrated by scaling and squaring (``integration_steps``; 0 gives the plain
  displacement variant) at half resolution, as VoxelMorph's ``int_downsize=2`` default does (``integration_downsize``). MONAI orders the field's channels by array axis (z, y, x): they are flipped into the
  kernel's order here.

The last convolution of each registration network starts near zero, as VoxelMorph's flow layer does, so that
training starts from the identity.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

REGISTRATION_KINDS = ("wssamnet", "wssamnet_no_attention", "voxelmorph")
FLOW_INIT_STD = 1e-5


def unet(in_channels: int, out_channels: int, channels: Sequence[int] = (8, 16, 32)) -> nn.Module:
    """MONAI's 3-D U-Net with ``len(channels)`` levels, each halving the size (stride 2)."""
    from monai.networks.nets import UNet

    return UNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, channels=tuple(channels),
                strides=(2,) * (len(channels) - 1), num_res_units=0, act="LEAKYRELU")


def start_near_identity(module: nn.Module) -> None:
    """The module's last convolution's weights drawn small and its bias zero: the field starts near zero."""
    last = [m for m in module.modules() if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))][-1]
    nn.init.normal_(last.weight, std=FLOW_INIT_STD)
    if last.bias is not None:
        nn.init.zeros_(last.bias)


class WSSAMNet(nn.Module):
    """Segmentation of the landmark regions, attention, registration; ``attention=False`` drops the first two."""

    def __init__(self, in_channels: int, channels: Sequence[int] = (8, 16, 32), attention: bool = True):
        super().__init__()
        self.attention = attention
        if attention:
            self.segment_moving = unet(in_channels, 1, channels)
            self.segment_fixed = unet(in_channels, 1, channels)
        self.register_pair = unet(2 * in_channels, 3, channels)
        start_near_identity(self.register_pair)

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.attention:
            return {"displacement": self.register_pair(torch.cat([moving, fixed], dim=1))}
        moving_logits, fixed_logits = self.segment_moving(moving), self.segment_fixed(fixed)
        attentive = torch.cat([moving * torch.sigmoid(moving_logits), fixed * torch.sigmoid(fixed_logits)], dim=1)
        return {"displacement": self.register_pair(attentive), "moving_logits": moving_logits,
                "fixed_logits": fixed_logits}


class VoxelMorph(nn.Module):
    """MONAI's VoxelMorph U-Net and scaling-and-squaring integration, its field in the kernel's channel order."""

    def __init__(self, in_channels: int, channels: Sequence[int] = (16, 32, 32, 32, 32, 32),
                 final_channels: Sequence[int] = (16, 16), integration_steps: int = 7, integration_downsize: int = 2):
        super().__init__()
        self.downsize = integration_downsize
        from monai.networks.blocks import DVF2DDF
        from monai.networks.nets import VoxelMorphUNet

        self.backbone = VoxelMorphUNet(spatial_dims=3, in_channels=2 * in_channels, unet_out_channels=channels[-1],
                                       channels=tuple(channels), final_conv_channels=tuple(final_channels))
        start_near_identity(self.backbone)
        self.integrate = DVF2DDF(num_steps=integration_steps) if integration_steps > 0 else None

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> dict[str, torch.Tensor]:
        field = self.backbone(torch.cat([moving, fixed], dim=1))
        if self.integrate is not None:
            size = field.shape[2:]
            if self.downsize > 1:  # a field of voxels at 1/downsize: its values shrink with it
                field = F.interpolate(field, scale_factor=1 / self.downsize, mode="trilinear",
                                      align_corners=True) / self.downsize
            field = self.integrate(field)
            if self.downsize > 1:
                field = F.interpolate(field * self.downsize, size=size, mode="trilinear", align_corners=True)
        return {"displacement": field.flip(1)}  # MONAI's (z, y, x) channels -> the kernel's (x, y, z)


def build(kind: str, config: dict) -> nn.Module:
    """The untrained network of a model file's ``kind`` and configuration."""
    in_channels = len(config["modalities"])
    if kind == "voxelmorph":
        return VoxelMorph(in_channels, config["channels"], config["final_channels"], config["integration_steps"],
                          config.get("integration_downsize", 2))
    if kind in ("wssamnet", "wssamnet_no_attention"):
        return WSSAMNet(in_channels, config["channels"], attention=kind == "wssamnet")
    raise ValueError(f"unknown registration network {kind!r}; one of {', '.join(REGISTRATION_KINDS)}")
