"""Dense inference: P(positive) of the patch centred at every pixel of an image or of a region of it.

The Segmentator labels the central pixel of an N x N patch, so segmenting a candidate region takes one patch per
pixel. Output pixel (r, c) (counted in the region) is the positive probability of the patch centred at image pixel
(top + r, left + c), rows and columns ``- N // 2 ... + N // 2`` around it; where the patch leaves the image its
pixels are ``fill``, a constant (0 by default: set it to the intensity the patches were cut with, the mammogram's
background). The model must be in eval mode: batch norm then uses its running statistics and dropout passes its
input on, so a patch's output does not depend on its neighbours in a batch.

:func:`patch_probabilities` cuts the patches and classifies them in batches: the reference.
:func:`dense_probabilities` must equal it (to 1e-5) and does less work where the variant allows:

* *valid*: exactly, fully convolutionally (shift-and-stitch, "a trous"). A patch's network sees its input at
  stride 1, its pooled maps at stride 2 and 4; evaluated on the whole region, each stride-2 max-pooling becomes a
  stride-1 pooling and the convolutions after it are dilated by the strides so far (2 after the first pooling, 4
  after the second), so that every region pixel keeps the stride-1 map of the patch whose top-left corner it is. The
  first fully connected layer is a convolution over the last F x F map (its weights reshaped) at dilation 4, the
  second a 1 x 1 convolution; batch norm and the activation act on each pixel and run as they are. Neighbouring
  patches then share every map instead of recomputing it: the region is evaluated in tiles to bound memory.
* *same*: exactly, the first block shared and the rest by batched patches. Each patch's zero padding at every
  layer makes its maps differ from the whole image's near the patch border, and the ring that differs grows by a
  pixel per convolution: for N = 49 it covers 140 of the 144 positions of the last 12 x 12 map, so a whole-image
  pass is not exact and the heavy late layers cannot be shared between patches. The first block can: a patch's
  first convolution differs from the window's only in its top row and left column (the bottom row and right
  column fall outside the floored pooling), so four maps of the window, the kernel whole, without its top row,
  without its left column and without both, give every patch's first pooled map exactly
  (:func:`first_block_maps`); that block, a 49 x 49 convolution, batch norm, activation and pooling per patch, is
  half the reference's time. The maps are computed per tile of the region; each batch of patches gathers its
  pooled maps from them and runs the rest, batch norms folded into the convolutions, in channels-last layout
  (where the CPU's pooling is several times faster). The speed-up is about 2 (the benchmark). The second block,
  about a sixth of what remains, would need maps for a border three rows deep on every side.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medrepro.studies.microcalc.networks import MicrocalcNet, check_patch, positive_probability

DEFAULT_TILE = 128  # output pixels per side of a tile; the valid variant's widest map is then 128 x 140 x 140: 10 MB
DEFAULT_BATCH = 64  # patches per batch on the CPU; larger batches leave the cache and run no faster


def _require_eval(model: MicrocalcNet) -> None:
    if model.training:
        raise ValueError("dense and patch-by-patch inference need the model in eval mode (call model.eval())")


def region_bounds(shape: tuple[int, int], region: tuple[slice, slice] | None) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of ``region`` (two slices with step 1, None: the whole image) in an image of
    ``shape``; ValueError for an empty region."""
    if region is None:
        region = (slice(None), slice(None))
    bounds = []
    for axis, part in enumerate(region):
        start, stop, step = part.indices(shape[axis])
        if step != 1 or stop <= start:
            raise ValueError(f"region {region} must be non-empty slices with step 1 inside the image {shape}")
        bounds += [start, stop]
    return bounds[0], bounds[1], bounds[2], bounds[3]


def padded_window(image: np.ndarray, patch: int, fill: float = 0.0,
                  region: tuple[slice, slice] | None = None) -> np.ndarray:
    """The region and ``patch // 2`` pixels around it, ``fill`` outside the image: float32 (H + N - 1, W + N - 1)
    for an H x W region, where the patch centred at region pixel (r, c) is ``window[r:r + N, c:c + N]``."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {image.shape}")
    top, bottom, left, right = region_bounds(image.shape, region)
    half = patch // 2
    rows = (max(top - half, 0), min(bottom + half, image.shape[0]))
    cols = (max(left - half, 0), min(right + half, image.shape[1]))
    inside = image[rows[0]:rows[1], cols[0]:cols[1]].astype(np.float32)
    margins = ((rows[0] - (top - half), bottom + half - rows[1]), (cols[0] - (left - half), right + half - cols[1]))
    return np.pad(inside, margins, mode="constant", constant_values=fill)


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def patch_probabilities(model: MicrocalcNet, image: np.ndarray, fill: float = 0.0,
                        region: tuple[slice, slice] | None = None, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """(H, W) float32 P(positive) of the patch centred at every pixel of the region, patch by patch: each patch cut
    and classified by the model's own forward pass, ``batch_size`` at a time. The reference of
    :func:`dense_probabilities`."""
    _require_eval(model)
    n = model.patch
    window = padded_window(image, n, fill, region)
    height, width = window.shape[0] - n + 1, window.shape[1] - n + 1
    rows, cols = np.divmod(np.arange(height * width), width)
    out = np.empty(height * width, dtype=np.float32)
    device = _model_device(model)
    for start in range(0, rows.size, batch_size):
        stop = start + batch_size
        batch = np.stack([window[r:r + n, c:c + n] for r, c in zip(rows[start:stop], cols[start:stop])])
        logits = model(torch.from_numpy(batch)[:, None].to(device))
        out[start:stop] = positive_probability(logits).cpu().numpy()
    return out.reshape(height, width)


def dense_probabilities(model: MicrocalcNet, image: np.ndarray, fill: float = 0.0,
                        region: tuple[slice, slice] | None = None, tile: int = DEFAULT_TILE,
                        batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """(H, W) float32 P(positive) of the patch centred at every pixel of the region, equal to
    :func:`patch_probabilities`: fully convolutional in ``tile`` x ``tile`` pieces for the valid variant, batched
    patches (``batch_size`` at a time) after a shared first block for the same variant (the module's docstring)."""
    _require_eval(model)
    window = padded_window(image, model.patch, fill, region)
    if model.variant == "valid":
        return _valid_dense(model, window, tile)
    return _same_dense(model, window, tile, batch_size)


# ---- valid variant: fully convolutional ----------------------------------------------------------------------

def _pair_max(x: torch.Tensor, dim: int, offset: int = 1) -> torch.Tensor:
    """The maximum of each element and the one ``offset`` further along ``dim`` (``offset`` shorter there)."""
    length = x.shape[dim] - offset
    return torch.maximum(x.narrow(dim, 0, length), x.narrow(dim, offset, length))


def stride_one_pool(x: torch.Tensor, dilation: int) -> torch.Tensor:
    """2 x 2 max-pooling at stride 1 with the window's two rows and columns ``dilation`` apart: equal to
    ``F.max_pool2d(x, 2, stride=1, dilation=dilation)`` and several times faster on the CPU."""
    return _pair_max(_pair_max(x, -2, dilation), -1, dilation)


def valid_span(model: MicrocalcNet) -> int:
    """Rows (and columns) of a patch that reach the valid variant's output, from its top-left corner: N less the
    rows the floored poolings drop (49 -> 46; 43 -> 42). The dense pass needs ``span - 1`` pixels beyond a tile."""
    span, dilation = 1, 1
    for layer in model.features:
        if isinstance(layer, nn.Conv2d):
            span += (layer.kernel_size[0] - 1) * dilation
        elif isinstance(layer, nn.MaxPool2d):
            span += dilation
            dilation *= 2
    final = check_patch(model.patch, model.variant)
    return span + (final - 1) * dilation


@torch.inference_mode()
def fully_convolutional_logits(model: MicrocalcNet, x: torch.Tensor) -> torch.Tensor:
    """(B, 2, H - span + 1, W - span + 1) logits of the valid variant at every top-left corner of a (B, 1, H, W)
    input: output pixel (i, j) is the model's output for the patch ``x[..., i:i + N, j:j + N]``."""
    if model.variant != "valid":
        raise ValueError("only the valid variant is fully convolutional: the same variant pads every patch")
    dilation = 1
    for layer in model.features:
        if isinstance(layer, nn.Conv2d):
            x = F.conv2d(x, layer.weight, layer.bias, dilation=dilation)
        elif isinstance(layer, nn.MaxPool2d):  # stride 1 keeps every phase; later layers skip the phases between
            x = stride_one_pool(x, dilation)
            dilation *= 2
        else:  # batch norm (running statistics) and the activation act on each pixel alone
            x = layer(x)
    side = check_patch(model.patch, model.variant)
    for layer in model.classifier:
        if isinstance(layer, nn.Linear):  # Flatten's (channel, row, column) order is the kernel's
            kernel = layer.weight.reshape(layer.out_features, x.shape[1], side, side)
            x = F.conv2d(x, kernel, layer.bias, dilation=dilation)
            side = 1
        elif isinstance(layer, nn.BatchNorm1d):  # takes (B, C, L): the pixels as L
            x = layer(x.flatten(2)).view_as(x)
        elif not isinstance(layer, nn.Flatten):
            x = layer(x)
    return x


def _valid_dense(model: MicrocalcNet, window: np.ndarray, tile: int) -> np.ndarray:
    margin = valid_span(model) - 1
    height, width = window.shape[0] - model.patch + 1, window.shape[1] - model.patch + 1
    source = torch.from_numpy(window).to(_model_device(model))
    out = np.empty((height, width), dtype=np.float32)
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            piece = source[top:bottom + margin, left:right + margin][None, None]
            logits = fully_convolutional_logits(model, piece)
            out[top:bottom, left:right] = positive_probability(logits)[0].cpu().numpy()
    return out


# ---- same variant: the first block shared, the rest by batched patches ----------------------------------------

CHANNELS_LAST = torch.channels_last  # the CPU's max-pooling is several times faster in this layout


def _folded(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of one convolution equal to ``conv`` followed by ``norm`` in eval mode."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    bias = norm.bias - norm.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return (conv.weight * scale[:, None, None, None]).contiguous(memory_format=CHANNELS_LAST), bias


def _later_layers(model: MicrocalcNet) -> list[tuple[str, object]]:
    """The feature layers after the first pooling, each convolution merged with its batch norm:
    (``"conv"``, (weight, bias)), (``"pool"``, None) or (``"pixelwise"``, the activation)."""
    layers = list(model.features)[4:]  # after convolution, batch norm, activation and pooling
    steps: list[tuple[str, object]] = []
    for layer, following in zip(layers, layers[1:] + [None]):
        if isinstance(layer, nn.Conv2d):
            steps.append(("conv", _folded(layer, following)))
        elif isinstance(layer, nn.MaxPool2d):
            steps.append(("pool", None))
        elif not isinstance(layer, nn.BatchNorm2d):  # batch norms are inside the folded convolutions
            steps.append(("pixelwise", layer))
    return steps


def _run_later_layers(steps: list[tuple[str, object]], x: torch.Tensor) -> torch.Tensor:
    for kind, value in steps:
        if kind == "conv":
            x = F.conv2d(x, value[0], value[1], padding=1)
        elif kind == "pool":
            x = F.max_pool2d(x, 2)
        else:
            x = value(x)
    return x


def first_block_maps(model: MicrocalcNet, window: torch.Tensor) -> torch.Tensor:
    """(4, h - 3, w - 3, C): every patch's first pooled map, as four maps of an (h, w) window shared by its patches.

    A patch's first convolution (zero padding 1) equals the window's valid convolution except in its top row and
    left column, whose missing neighbours are zeros; its bottom row and right column, the other padded ones, fall
    outside the floored 2 x 2 pooling (N is odd). So the patch at top-left (r, c) has as pooled cell (i, j):
    map 0 at (r + 2i - 1, c + 2j - 1) for i, j >= 1, the 2 x 2 maximum of the full kernel's map; map 1 at
    (r, c + 2j - 1) for i = 0, where the top row comes from the kernel without its top row; map 2 at
    (r + 2i - 1, c) for j = 0, the kernel without its left column; map 3 at (r, c) for the corner cell."""
    conv, norm, activation = model.features[0], model.features[1], model.features[2]
    weight, bias = _folded(conv, norm)
    x = window[None, None]
    full, top, left, corner = (activation(F.conv2d(x, kernel, bias))[0] for kernel in
                               (weight, weight[:, :, 1:], weight[:, :, :, 1:], weight[:, :, 1:, 1:]))
    height, width = full.shape[1:]
    top, left, corner = top[:, :height], left[:, :, :width], corner[:, :height, :width]
    pooled = stride_one_pool(full, 1)
    top_cells = torch.maximum(_pair_max(top, 2), _pair_max(full, 2))
    left_cells = torch.maximum(_pair_max(left, 1), _pair_max(full, 1))
    corner_cells = torch.maximum(torch.maximum(corner, top), torch.maximum(left, full))
    maps = [m[:, :height - 1, :width - 1] for m in (pooled, top_cells, left_cells, corner_cells)]
    return torch.stack(maps).permute(0, 2, 3, 1).contiguous()


def _first_block_indices(patch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(map, row offset, column offset), each (P, P), of every first pooled cell in :func:`first_block_maps`."""
    cells = torch.arange(patch // 2)
    offsets = torch.where(cells == 0, 0, 2 * cells - 1)
    on_top, on_left = (cells == 0)[:, None], (cells == 0)[None, :]
    which = on_top.long() + 2 * on_left.long()  # 0 inside, 1 top row, 2 left column, 3 the corner
    return which, offsets[:, None].expand_as(which), offsets[None, :].expand_as(which)


@torch.inference_mode()
def _same_dense(model: MicrocalcNet, window: np.ndarray, tile: int, batch_size: int) -> np.ndarray:
    n = model.patch
    height, width = window.shape[0] - n + 1, window.shape[1] - n + 1
    device = _model_device(model)
    source = torch.from_numpy(window).to(device)
    which, row_offsets, col_offsets = (t.to(device) for t in _first_block_indices(n))
    steps = _later_layers(model)
    out = np.empty((height, width), dtype=np.float32)
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            maps = first_block_maps(model, source[top:bottom + n - 1, left:right + n - 1])
            rows, cols = torch.meshgrid(torch.arange(bottom - top, device=device),
                                        torch.arange(right - left, device=device), indexing="ij")
            rows, cols = rows.reshape(-1), cols.reshape(-1)
            probabilities = torch.empty(rows.numel(), device=device)
            for start in range(0, rows.numel(), batch_size):
                r, c = rows[start:start + batch_size, None, None], cols[start:start + batch_size, None, None]
                pooled = maps[which, r + row_offsets, c + col_offsets].permute(0, 3, 1, 2)  # channels last
                logits = model.classifier(_run_later_layers(steps, pooled))
                probabilities[start:start + batch_size] = positive_probability(logits)
            out[top:bottom, left:right] = probabilities.reshape(bottom - top, right - left).cpu().numpy()
    return out
