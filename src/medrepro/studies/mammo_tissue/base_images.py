"""The base images: every DDSM view read, converted to optical density, oriented and cropped on the nipple, with
its annotations in crop coordinates (:mod:`.preprocess`, :mod:`.readers.ddsm`).

:func:`prepare` writes three files: ``views.csv`` (a row per view: case, view, digitiser, how it was flipped and
cropped, its label), ``annotations.csv`` (a row per annotated abnormality: assessment, pathology, label, centre of
mass and extent of its outline's region in the crop, vertices clipped at the image border) and ``images.npz``
(``crops``: the base images, optical density as float16, one per view; ``positive``, ``malignant``, ``blocked``:
per view the union of the positive, the malignant and of all annotations' regions, bit-packed).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from medrepro.data.atomic import atomic_path, write_csv
from medrepro.errors import DataError
from medrepro.pipeline.parallel import ordered_map
from medrepro.studies.mammo_tissue import preprocess
from medrepro.studies.mammo_tissue.readers import ddsm
from medrepro.studies.mammo_tissue.sampling import POSITIVE, annotation_label, view_label

log = logging.getLogger(__name__)

MASKS = ("positive", "malignant", "blocked")


def _view(task: tuple) -> tuple[dict, list[dict], np.ndarray, dict[str, np.ndarray]]:
    view, crop_size, constants, clip = task
    density, abnormalities = ddsm.read_view(view, constants, clip)
    placement = preprocess.place(density, crop_size, view.image)
    base = preprocess.crop(density, placement, fill=clip[1])
    masks = {name: np.zeros((crop_size, crop_size), bool) for name in MASKS}
    rows = []
    for abnormality in abnormalities:
        region = preprocess.crop(ddsm.outline_mask(abnormality.boundary.points, density.shape), placement, False)
        label = annotation_label(abnormality.assessment)
        masks["blocked"] |= region
        masks["positive"] |= region if label == POSITIVE else False
        masks["malignant"] |= region if label == POSITIVE and abnormality.pathology == "MALIGNANT" else False
        inside = np.argwhere(region)
        centre = inside.mean(axis=0) if inside.size else (np.nan, np.nan)
        extent = inside.max(axis=0) - inside.min(axis=0) + 1 if inside.size else (0, 0)
        rows.append({"case": view.case, "view": view.name, "number": abnormality.number,
                     "assessment": abnormality.assessment, "pathology": abnormality.pathology, "label": label,
                     "lesion_types": " / ".join(abnormality.lesion_types), "centre_row": float(centre[0]),
                     "centre_col": float(centre[1]), "height": int(extent[0]), "width": int(extent[1]),
                     "area": int(inside.shape[0]), "clipped": abnormality.boundary.clipped,
                     "in_crop": bool(inside.size)})
    label = view_label([r["label"] for r in rows])
    row = {"case": view.case, "case_type": view.case_type, "view": view.name, "side": view.side,
           "projection": view.projection, "digitizer": view.digitizer, "bits": view.header.bits,
           "rows": view.header.rows, "cols": view.header.cols, "flipped": placement.flipped, "top": placement.top,
           "left": placement.left, "nipple_row": placement.nipple[0], "nipple_col": placement.nipple[1],
           "label": label or "", "annotations": len(rows)}
    return row, rows, base.astype(np.float16), masks


def prepare(raw_root: str | Path, views_csv: str | Path, annotations_csv: str | Path, images_npz: str | Path, *,
            crop_size: int, constants: str, clip: tuple[float, float], workers: int = 1) -> dict:
    """Read every case under ``raw_root`` and write the base images and their tables; a summary."""
    folders = ddsm.case_folders(raw_root)
    if not folders:
        raise DataError(raw_root, "no case folders under cases/<normals|benigns|cancers|benign_without_callbacks>/"
                                  "<volume>/")
    views = [view for folder in folders for view in ddsm.read_case(folder)]
    results = ordered_map(_view, [(v, crop_size, constants, tuple(clip)) for v in views], workers,
                          desc="base images")
    view_rows = [r[0] for r in results]
    for index, row in enumerate(view_rows):
        row["view_id"] = index
    annotation_rows = [dict(a, view_id=index) for index, r in enumerate(results) for a in r[1]]
    view_table = pd.DataFrame(view_rows)[["view_id", *[k for k in view_rows[0] if k != "view_id"]]]
    annotation_table = pd.DataFrame(annotation_rows, columns=[
        "view_id", "case", "view", "number", "assessment", "pathology", "label", "lesion_types", "centre_row",
        "centre_col", "height", "width", "area", "clipped", "in_crop"])
    arrays = {"crops": np.stack([r[2] for r in results])}
    for name in MASKS:
        arrays[name] = np.packbits(np.stack([r[3][name] for r in results]), axis=-1)
    with atomic_path(images_npz) as tmp:
        np.savez_compressed(tmp, **arrays)
    write_csv(views_csv, view_table)
    write_csv(annotations_csv, annotation_table)
    clipped = int((annotation_table["clipped"] > 0).sum())
    summary = {"cases": len(folders), "views": len(view_table), "annotations": len(annotation_table),
               "outlines_clipped_at_the_border": clipped,
               "annotations_outside_the_crop": int((~annotation_table["in_crop"].astype(bool)).sum())}
    log.info("%d views of %d cases, %d annotations (%d outlines clipped at the image border)", summary["views"],
             summary["cases"], summary["annotations"], clipped)
    return summary


def load_images(images_npz: str | Path) -> dict[str, np.ndarray]:
    """The base images (float32) and the unpacked masks (bool) of ``images.npz``."""
    with np.load(images_npz) as data:
        crops = data["crops"].astype(np.float32)
        size = crops.shape[-1]
        out = {"crops": crops}
        for name in MASKS:
            out[name] = np.unpackbits(data[name], axis=-1, count=size).astype(bool)
    return out


TARGETS = {"malignant": "malignant", "findings": "positive"}  # heatmap target -> mask of images.npz


def magnified(crops: np.ndarray, factor: float) -> np.ndarray:
    """Every base image magnified by 1/``factor`` (area averaging)."""
    size = preprocess.magnified_size(crops.shape[-1], 1.0 / factor)
    return np.stack([preprocess.downsample(c, size) for c in crops]) if len(crops) else crops


def heatmap_inputs(crops: np.ndarray, size: int) -> np.ndarray:
    """The mammograms downsampled for the heatmap model (the paper's 256 pixels)."""
    return np.stack([preprocess.downsample(c, size) for c in crops]) if len(crops) else crops


def heatmap_targets(masks: np.ndarray, grid: int, sigma: float) -> np.ndarray:
    """The annotations downsampled to the heatmap's grid (the share of each cell they cover) and Gaussian-blurred
    (``sigma`` in cells), as in the paper, to soften the outlines' arbitrary edges."""
    from scipy import ndimage

    out = [ndimage.gaussian_filter(preprocess.downsample(m.astype(np.float32), grid), sigma, mode="constant")
           if sigma > 0 else preprocess.downsample(m.astype(np.float32), grid) for m in masks]
    return np.stack(out).astype(np.float32) if out else np.zeros((0, grid, grid), np.float32)
