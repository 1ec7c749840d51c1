"""Figure helpers every study uses; a study's figures module only chooses what to show.

Figures are built on ``matplotlib.figure.Figure`` objects (no pyplot), so no
global state or interactive backend is involved and nothing leaks between
calls. Names and colours are always the caller's: this package knows no study.

* :mod:`.output`: ``save_figure`` (frozen layout, atomic 150-dpi PNG), ``panel_height``;
* :mod:`.style`: ``assign_colours``, legend entries, ``legend_below``;
* :mod:`.images`: 2-D images and 3-D slices on pixel-edge coordinates, false-colour composites, ``fit_view``;
* :mod:`.overlays`: mask contours, label maps, tints, heatmaps with a colour bar;
* :mod:`.shapes`: boxes (x1, y1, x2, y2), quadrilaterals, points and landmarks;
* :mod:`.curves`: loss curves from loss logs, several seeds per method; ROC curves;
* :mod:`.distributions`: box plots with dots, overlaid histograms.
"""

from medrepro.report.figures.curves import (
    draw_loss_curves, draw_roc, epoch_means, group_runs, split_entries, step_values,
)
from medrepro.report.figures.distributions import Histogram, draw_box_plots, draw_histograms
from medrepro.report.figures.images import (
    fit_view, pixel_extent, points_in_slice, show_composite, show_image, show_slice, shrink_for_display, volume_slice,
)
from medrepro.report.figures.output import DPI, LAYOUT_DECIMALS, freeze_layout, panel_height, save_figure
from medrepro.report.figures.overlays import draw_contours, draw_heatmap, draw_label_overlay, draw_mask_contour, draw_tint
from medrepro.report.figures.shapes import draw_box, draw_boxes, draw_points, draw_quadrilateral
from medrepro.report.figures.style import (OTHER_LABEL_COLOUR, PALETTE, assign_colours, legend_below, line_entry,
                                          marker_entry, patch_entry)

__all__ = [
    "DPI", "LAYOUT_DECIMALS", "OTHER_LABEL_COLOUR", "PALETTE", "Histogram", "assign_colours", "draw_box",
    "draw_box_plots", "draw_boxes", "draw_contours", "draw_heatmap", "draw_histograms", "draw_label_overlay",
    "draw_loss_curves", "draw_mask_contour", "draw_roc", "draw_points", "draw_quadrilateral", "draw_tint", "epoch_means",
    "fit_view", "freeze_layout", "group_runs", "legend_below", "line_entry", "marker_entry", "panel_height",
    "patch_entry", "pixel_extent", "points_in_slice", "save_figure", "show_composite", "show_image", "show_slice", "shrink_for_display",
    "split_entries", "step_values", "volume_slice",
]
