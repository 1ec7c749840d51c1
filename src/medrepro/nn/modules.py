"""Small helpers for torch modules."""

from __future__ import annotations

from torch import nn


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode (batch norm uses running statistics) and no parameter gradients."""
    module.eval()
    module.requires_grad_(False)
    return module


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
