"""Multi-scale mammography tissue classifiers (An et al.): the original DDSM, tissue classifiers at three
magnifications, aggregated local results, heatmap regression and saliency. The workflow reads
:func:`magnification_label` when it is parsed; everything else is imported by the steps."""

import math


def magnification_label(factor: float) -> str:
    """The paper's name of a downsampling factor: 2 -> x0.5, 3 -> x0.33, 4 -> x0.25."""
    return f"x{math.floor(100 / factor) / 100:g}"
