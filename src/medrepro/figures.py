"""Figure helpers every study uses: atomic PNG output, image panels, label contours.

Figures are built on ``matplotlib.figure.Figure`` objects (no pyplot), so no
global state or interactive backend is involved and nothing leaks between
calls. Names and colours are always the caller's: this module knows no study.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
from matplotlib.figure import Figure

from medrepro.atomic import atomic_path

DPI = 150
OTHER_LABEL_COLOUR = "#8c564b"  # for a label the caller's colour map does not list
LAYOUT_DECIMALS = 4  # axes positions, in figure fractions, once the layout engine has run


def freeze_layout(fig: Figure, decimals: int = LAYOUT_DECIMALS) -> None:
    """Run the figure's layout engine once, then pin every axes at its position rounded to ``decimals``.

    The constrained-layout solver can land a few units in the last place apart
    from one process to the next; that moves anti-aliased edges and changes a
    few pixels of the PNG. Rounded positions (1e-4 of the figure: a fraction
    of a pixel) give the same bytes every time.
    """
    if fig.get_layout_engine() is None:
        return
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    for ax in fig.get_axes():
        box = ax.get_position(original=True)
        ax.set_position([round(value, decimals) for value in (box.x0, box.y0, box.width, box.height)])


def save_figure(fig: Figure, out: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``out`` (150 dpi) atomically, with a frozen layout, and return the path."""
    out = Path(out)
    freeze_layout(fig)
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    return out


def show_image(ax, image: np.ndarray) -> None:
    """A grey image in [0, 1], without ticks."""
    ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def draw_contours(ax, labels: np.ndarray, colours: Mapping[int, str], **kwargs) -> None:
    """The outline of every non-zero label, in ``colours[label]``."""
    for label in np.unique(labels):
        if label == 0:
            continue
        ax.contour(labels == label, levels=[0.5], colors=[colours.get(int(label), OTHER_LABEL_COLOUR)], **kwargs)
