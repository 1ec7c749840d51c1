"""Figure of synthetic stand-in radiographs beside their masks, read back through the converters."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from PIL import Image

from medrepro.atomic import atomic_path
from medrepro.studies.chest.readers.convert import iter_dataset
from medrepro.studies.chest.subjects import LABEL_NAMES

#: background transparent, right lung red, left lung green, heart blue
THUMBNAIL_SIDE = 384
LABEL_COLOURS = ListedColormap([(0, 0, 0, 0), (0.9, 0.2, 0.2, 0.55), (0.2, 0.8, 0.3, 0.55), (0.2, 0.4, 0.95, 0.55)])


def _thumbnail(array: np.ndarray, max_side: int, nearest: bool) -> np.ndarray:
    """Shrink for display; matplotlib's own resampling of megapixel images is very slow."""
    factor = max_side / max(array.shape)
    if factor >= 1:
        return array
    size = (max(1, round(array.shape[1] * factor)), max(1, round(array.shape[0] * factor)))
    if nearest:
        return np.asarray(Image.fromarray(array.astype(np.uint8)).resize(size, Image.Resampling.NEAREST))
    return np.asarray(Image.fromarray(array.astype(np.float32), mode="F").resize(size, Image.Resampling.BOX))


def _caption(subject) -> str:
    flags = [key for key in ("nodule", "tb", "cardiomegaly") if subject.meta.get(key) in (True, 1)]
    return subject.name + (f" ({', '.join(flags)})" if flags else "")


def plot_synthetic_examples(
    raw_root_by_dataset: dict[str, Path], out_png: str | Path, n_per_dataset: int = 3
) -> Path:
    """One row per dataset: ``n_per_dataset`` images, each followed by its label overlay.

    Subjects are read through :func:`medrepro.studies.chest.readers.convert.iter_dataset`, so the
    figure shows exactly what the pipeline converts. Written atomically.
    """
    datasets = list(raw_root_by_dataset)
    n_cols = 2 * n_per_dataset
    fig = Figure(figsize=(2.2 * n_cols, 2.6 * max(1, len(datasets))), dpi=110)
    axes = np.atleast_2d(fig.subplots(max(1, len(datasets)), n_cols, squeeze=False))
    for row, dataset in enumerate(datasets):
        subjects = list(itertools.islice(iter_dataset(dataset, raw_root_by_dataset[dataset], None), n_per_dataset))
        for col in range(n_per_dataset):
            image_ax, mask_ax = axes[row, 2 * col], axes[row, 2 * col + 1]
            for ax in (image_ax, mask_ax):
                ax.set_axis_off()
            if col >= len(subjects):
                continue
            subject = subjects[col]
            image = _thumbnail(subject.image, THUMBNAIL_SIDE, nearest=False)
            labels = _thumbnail(subject.labels, THUMBNAIL_SIDE, nearest=True)
            image_ax.imshow(image, cmap="gray", vmin=0, vmax=1)
            image_ax.set_title(f"{dataset}: {_caption(subject)}", fontsize=7)
            mask_ax.imshow(image, cmap="gray", vmin=0, vmax=1)
            mask_ax.imshow(labels, cmap=LABEL_COLOURS, vmin=0, vmax=3, interpolation="nearest")
            present = [LABEL_NAMES[int(v)] for v in np.unique(labels) if int(v) in LABEL_NAMES]
            mask_ax.set_title(", ".join(present), fontsize=7)
    fig.suptitle("Synthetic stand-ins (red: right lung, green: left lung, blue: heart)", fontsize=9)
    fig.tight_layout()
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png")
    return out_png
