"""What is drawn over an image panel: mask contours, filled label maps, tints and heatmaps.

All on the pixel-edge coordinates of :mod:`.images`: a mask's outline runs
along the edges of its pixels. Colours are always the caller's.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from matplotlib.colors import to_rgba

from medrepro.report.figures.images import pixel_extent
from medrepro.report.figures.style import OTHER_LABEL_COLOUR


def draw_mask_contour(ax, mask: np.ndarray, colour, **kwargs):
    """The outline of a boolean mask along its pixels' edges, or None where it has none (empty or full)."""
    mask = np.asarray(mask) != 0
    if mask.ndim != 2:
        raise ValueError(f"a mask to outline must be 2-D, got shape {mask.shape}")
    if not mask.any() or mask.all():
        return None
    height, width = mask.shape
    # Pixel centres sit at half-integers; the 0.5 level between them is the pixels' shared edge.
    return ax.contour(np.arange(width) + 0.5, np.arange(height) + 0.5, mask.astype(float), levels=[0.5],
                      colors=[colour], **kwargs)


def draw_contours(ax, labels: np.ndarray, colours: Mapping[int, str], **kwargs) -> None:
    """The outline of every non-zero label of a label map, in ``colours[label]``."""
    labels = np.asarray(labels)
    for label in np.unique(labels):
        if label != 0:
            draw_mask_contour(ax, labels == label, colours.get(int(label), OTHER_LABEL_COLOUR), **kwargs)


def _show_rgba(ax, rgba: np.ndarray):
    return ax.imshow(rgba, interpolation="nearest", extent=pixel_extent(rgba.shape))


def draw_label_overlay(ax, labels: np.ndarray, colours: Mapping[int, str], alpha: float = 0.6):
    """Every non-zero label filled in ``colours[label]`` at opacity ``alpha``; the background transparent."""
    labels = np.asarray(labels)
    rgba = np.zeros((*labels.shape, 4))
    for label in np.unique(labels):
        if label != 0:
            rgba[labels == label] = to_rgba(colours.get(int(label), OTHER_LABEL_COLOUR), alpha)
    return _show_rgba(ax, rgba)


def draw_tint(ax, weight: np.ndarray, colour, alpha: float):
    """``colour`` over the panel with opacity ``alpha * weight`` per pixel (weight clipped to [0, 1])."""
    weight = np.asarray(weight, dtype=float)
    rgba = np.zeros((*weight.shape, 4))
    rgba[..., :3] = to_rgba(colour)[:3]
    rgba[..., 3] = alpha * np.clip(weight, 0.0, 1.0)
    return _show_rgba(ax, rgba)


def draw_heatmap(ax, heatmap: np.ndarray, label: str, cmap: str = "inferno", alpha: float = 0.5,
                 vmin: float | None = None, vmax: float | None = None):
    """A heatmap (saliency, probability) over the panel with a colour bar titled ``label``; returns the bar."""
    heatmap = np.asarray(heatmap, dtype=float)
    if heatmap.ndim != 2:
        raise ValueError(f"a heatmap must be 2-D, got shape {heatmap.shape}")
    shown = ax.imshow(heatmap, cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax, interpolation="nearest",
                      extent=pixel_extent(heatmap.shape))
    bar = ax.get_figure().colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label(label)
    return bar
