"""Boxes, quadrilaterals and points (landmarks) on an image panel, in pixel-edge coordinates.

Boxes are ``(x1, y1, x2, y2)`` in pixels as in :mod:`medrepro.spatial.boxes` (x the
column, far edge exclusive); points are ``(x, y)``: a point at the centre of
pixel (row r, column c) is ``(c + 0.5, r + 0.5)``.
"""

from __future__ import annotations

import numpy as np
from matplotlib.patches import Polygon, Rectangle


def draw_box(ax, box, colour, linestyle: str = "-", linewidth: float = 1.4) -> Rectangle:
    """One box outline at exactly its pixel coordinates."""
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=float).reshape(4))
    return ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour,
                                  linestyle=linestyle, linewidth=linewidth))


def draw_boxes(ax, boxes, colour, **kwargs) -> list[Rectangle]:
    """Every box of an ``(N, 4)`` array (or one ``(4,)`` box) in one colour."""
    return [draw_box(ax, box, colour, **kwargs) for box in np.asarray(boxes, dtype=float).reshape(-1, 4)]


def draw_quadrilateral(ax, corners, colour, linestyle: str = "-", linewidth: float = 1.3) -> Polygon:
    """A closed outline through ``corners`` (K, 2) = (x, y): a box carried by an affine, before rectifying."""
    corners = np.asarray(corners, dtype=float).reshape(-1, 2)
    return ax.add_patch(Polygon(corners, closed=True, fill=False, edgecolor=colour, linestyle=linestyle,
                                linewidth=linewidth))


def draw_points(ax, points, colour, label: str | None = None, marker: str = "+", size: float = 40.0):
    """Points or landmarks (N, 2) = (x, y) as markers; ``label`` names them in a legend."""
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    return ax.scatter(points[:, 0], points[:, 1], s=size, marker=marker, color=colour, label=label, zorder=3)
