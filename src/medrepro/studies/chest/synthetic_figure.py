"""Figure of synthetic stand-in radiographs beside their masks, read back through the converters."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from medrepro.report.figures import draw_label_overlay, save_figure, show_image, shrink_for_display
from medrepro.studies.chest.readers.convert import iter_dataset
from medrepro.studies.chest.subjects import HEART, LABEL_NAMES, LEFT_LUNG, RIGHT_LUNG

THUMBNAIL_SIDE = 384
OVERLAY_COLOURS = {RIGHT_LUNG: (0.9, 0.2, 0.2), LEFT_LUNG: (0.2, 0.8, 0.3), HEART: (0.2, 0.4, 0.95)}
OVERLAY_ALPHA = 0.55


def _caption(subject) -> str:
    flags = [key for key in ("nodule", "tb", "cardiomegaly") if subject.meta.get(key) in (True, 1)]
    return subject.name + (f" ({', '.join(flags)})" if flags else "")


def _subject_panels(image_ax, mask_ax, dataset: str, subject) -> None:
    """The radiograph, then the radiograph with its labels filled in and named."""
    image = shrink_for_display(subject.image, THUMBNAIL_SIDE)
    labels = shrink_for_display(subject.labels, THUMBNAIL_SIDE, labels=True)
    show_image(image_ax, image)
    image_ax.set_title(f"{dataset}: {_caption(subject)}", fontsize=7)
    show_image(mask_ax, image)
    draw_label_overlay(mask_ax, labels, OVERLAY_COLOURS, alpha=OVERLAY_ALPHA)
    present = [LABEL_NAMES[int(v)] for v in np.unique(labels) if int(v) in LABEL_NAMES]
    mask_ax.set_title(", ".join(present), fontsize=7)


def plot_synthetic_examples(
    raw_root_by_dataset: dict[str, Path], out_png: str | Path, n_per_dataset: int = 3
) -> Path:
    """One row per dataset: ``n_per_dataset`` images, each followed by its label overlay.

    Subjects are read through :func:`medrepro.studies.chest.readers.convert.iter_dataset`, so the
    figure shows exactly what the pipeline converts. Written atomically.
    """
    datasets = list(raw_root_by_dataset)
    n_cols = 2 * n_per_dataset
    fig = Figure(figsize=(2.2 * n_cols, 2.6 * max(1, len(datasets))), layout="constrained")
    axes = np.atleast_2d(fig.subplots(max(1, len(datasets)), n_cols, squeeze=False))
    for row, dataset in enumerate(datasets):
        subjects = list(itertools.islice(iter_dataset(dataset, raw_root_by_dataset[dataset], None), n_per_dataset))
        for col in range(n_per_dataset):
            image_ax, mask_ax = axes[row, 2 * col], axes[row, 2 * col + 1]
            for ax in (image_ax, mask_ax):
                ax.set_axis_off()
            if col < len(subjects):
                _subject_panels(image_ax, mask_ax, dataset, subjects[col])
    fig.suptitle("Synthetic stand-ins (red: right lung, green: left lung, blue: heart)", fontsize=9)
    return save_figure(fig, out_png)
