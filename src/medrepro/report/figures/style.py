"""Colours and legends shared by every figure: a series' colour, legend entries, the legend below a figure."""

from __future__ import annotations

from typing import Mapping, Sequence

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
OTHER_LABEL_COLOUR = "#8c564b"  # for a label the caller's colour map does not list


def assign_colours(names: Sequence[str], fixed: Mapping[str, str] | None = None,
                   palette: Sequence[str] = PALETTE) -> dict[str, str]:
    """Name -> colour: ``fixed[name]`` where given, the others the palette's colours in turn (cycling)."""
    fixed = dict(fixed or {})
    others = [name for name in dict.fromkeys(names) if name not in fixed]
    chosen = {name: palette[k % len(palette)] for k, name in enumerate(others)}
    return {name: fixed.get(name, chosen.get(name)) for name in dict.fromkeys(names)}


def line_entry(colour, label: str, linestyle: str = "-") -> Line2D:
    """A legend entry for a line (a curve, a contour, a box outline)."""
    return Line2D([], [], color=colour, linestyle=linestyle, label=label)


def marker_entry(colour, label: str, marker: str = "o", filled: bool = True) -> Line2D:
    """A legend entry for scattered markers (points, circled detections)."""
    return Line2D([], [], color=colour, marker=marker, linestyle="none", label=label,
                  markerfacecolor=colour if filled else "none")


def patch_entry(colour, label: str, alpha: float = 1.0) -> Patch:
    """A legend entry for a filled area (an overlay, a mask)."""
    return Patch(facecolor=colour, alpha=alpha, label=label)


def legend_below(fig: Figure, handles: Sequence, columns: int, fontsize: float = 8) -> None:
    """One legend under every panel of ``fig``, in at most ``columns`` columns."""
    fig.legend(handles=list(handles), loc="outside lower center", ncol=max(1, min(columns, len(handles))),
               fontsize=fontsize)
