"""From CBIS-DDSM's files to the arrays the study trains and evaluates on (Sec. 4, "Dataset").

Each CC/MLO lesion pair (:func:`.readers.cbis_ddsm.pair_views`) becomes two
grey images at the working size, their breast regions and the lesion box of
each view:

* **Orientation**: views of the breasts named in ``mirror_side`` (default the
  left ones) are mirrored, so that every breast has its chest wall at the
  right image edge and the registration prior means the same for all pairs.
  The paper is silent on this; CBIS-DDSM stores left and right breasts facing
  each other.
* **Size**: the image is downsampled (area averaging) so that it fits the
  working canvas, whose longest side is ``longest_side`` (the paper: 600 px)
  and whose width is ``aspect`` times that; it is placed against the canvas's
  top and chest-wall (right) edges, the rest is air (0). Boxes are scaled by
  the same factors, per axis.
* **Intensity**: the stored values divided by ``2**BitsStored - 1`` (0 air, 1
  dense; MONOCHROME1 already inverted by the reader). The network replicates
  them to three channels and subtracts the ImageNet mean
  (:func:`..networks.imagenet_input`).
* **Breast region**: the tissue of each view (breast and pectoral muscle),
  found from the image alone (:func:`breast_region`); the masked MSE's overlap
  mask is the registered CC's region within the MLO's.
* **Split**: the official Test cases are the test set; the Training cases
  split by patient into training and validation (``val_fraction``, the
  paper's 25%) with the seed.

:func:`prepare` writes ``pairs.npz`` (the arrays, :data:`ARRAYS`) and
``pairs.csv`` (one row per pair: names, split, files (relative to the raw
directory), sizes, boxes in the original and working pixels).
"""

from __future__ import annotations

import logging
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from medrepro.data.atomic import atomic_path, write_csv
from medrepro.errors import ConfigError, DataError
from medrepro.pipeline.progress import progress_bar
from medrepro.shared.dicom import read_mammogram

from .readers import cbis_ddsm

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
VIEWS = ("cc", "mlo")
# Arrays of pairs.npz: per view the image (N, H, W) float32 in 0..1, its breast region (bool) and the lesion box
# (N, 4) float32 (x1, y1, x2, y2 in working pixels); the pair names and splits.
ARRAYS = ("cc", "mlo", "cc_region", "mlo_region", "cc_box", "mlo_box", "pair", "split")


@dataclass(frozen=True)
class Canvas:
    """The working grid every view is placed on: ``rows`` x ``cols`` pixels."""

    rows: int
    cols: int

    @classmethod
    def from_config(cls, longest_side: int, aspect: float) -> "Canvas":
        if longest_side < 32:
            raise ConfigError(f"longest_side must be at least 32 pixels, got {longest_side}")
        if not 0.2 <= aspect <= 1.0:
            raise ConfigError(f"aspect (canvas width / height) must lie in [0.2, 1], got {aspect}")
        return cls(int(longest_side), max(int(round(longest_side * aspect)), 8))

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows, self.cols


def fitted_shape(shape: tuple[int, int], canvas: Canvas) -> tuple[int, int]:
    """The size an image of ``shape`` is downsampled to: as large as fits the canvas, aspect kept."""
    scale = min(canvas.rows / shape[0], canvas.cols / shape[1])
    return max(int(round(shape[0] * scale)), 1), max(int(round(shape[1] * scale)), 1)


def resample_area(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` (H, W) resized to ``size`` by area averaging (float32)."""
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=size, mode="area")[0, 0].numpy()


def scale_box(box, from_shape: tuple[int, int], to_shape: tuple[int, int]) -> np.ndarray:
    """A box (x1, y1, x2, y2) on a grid of ``from_shape`` (rows, cols) -> the same region on ``to_shape``."""
    sx, sy = to_shape[1] / from_shape[1], to_shape[0] / from_shape[0]
    x1, y1, x2, y2 = (float(v) for v in box)
    return np.array([x1 * sx, y1 * sy, x2 * sx, y2 * sy], dtype=np.float64)


def mirror_box(box, width: float) -> np.ndarray:
    """A box on a grid ``width`` pixels wide -> the same region after mirroring the grid left to right."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return np.array([width - x2, y1, width - x1, y2], dtype=np.float64)


def place_on_canvas(image: np.ndarray, canvas: Canvas) -> tuple[np.ndarray, int]:
    """``image`` (fitted) against the canvas's top and right edges; returns (canvas image, column offset)."""
    rows, cols = image.shape
    if rows > canvas.rows or cols > canvas.cols:
        raise ValueError(f"image {image.shape} does not fit the canvas {canvas.shape}")
    out = np.zeros(canvas.shape, dtype=np.float32)
    offset = canvas.cols - cols
    out[:rows, offset:] = image
    return out, offset


def breast_region(image: np.ndarray, smoothing_px: float = 1.5, level: float = 0.1) -> np.ndarray:
    """The tissue (breast and pectoral muscle) of a view in 0..1: a bool mask.

    Film background is the darkest, most uniform part of a mammogram, while
    tissue ranges from faint fat to bright gland; a threshold a fraction
    ``level`` of the way from the background (5th percentile of the lightly
    smoothed image) to the bright tissue (99th percentile) keeps faint fatty
    tissue that a two-class (Otsu) split would give to the background in dense
    breasts. The largest connected component is kept (scanner borders and
    labels are separate, smaller objects), its holes filled. An image without
    contrast gives an empty mask.
    """
    smooth = ndi.gaussian_filter(np.asarray(image, dtype=np.float64), smoothing_px)
    background, bright = np.percentile(smooth, [5, 99])
    if not bright > background:
        return np.zeros(image.shape, dtype=bool)
    labels, count = ndi.label(smooth > background + level * (bright - background))
    if count == 0:
        return np.zeros(image.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return ndi.binary_fill_holes(labels == int(np.argmax(sizes)))


@dataclass
class WorkingView:
    """One view at the working size: the image, its region, the lesion box, and how it got there."""

    image: np.ndarray
    region: np.ndarray
    box: np.ndarray
    mirrored: bool
    fitted_shape: tuple[int, int]
    column_offset: int


def working_view(image_file: str | Path, box, side: str, canvas: Canvas, mirror_side: str | None) -> WorkingView:
    """Read a full-mammogram DICOM and bring it and its lesion box (original pixels) to the working canvas."""
    pixels, info = read_mammogram(image_file)
    image = pixels.astype(np.float32) / float(info["max_value"])
    box = np.asarray(box, dtype=np.float64)
    mirrored = mirror_side is not None and side == mirror_side
    if mirrored:
        image = image[:, ::-1]
        box = mirror_box(box, image.shape[1])
    size = fitted_shape(image.shape, canvas)
    fitted = resample_area(image, size)
    box = scale_box(box, image.shape, size)
    placed, offset = place_on_canvas(fitted, canvas)
    box[[0, 2]] += offset
    return WorkingView(placed, breast_region(placed), box, mirrored, size, offset)


def split_patients(patients: Iterable[str], val_fraction: float, seed: int) -> dict[str, str]:
    """Development patients -> "train" or "val": a seeded shuffle, ``val_fraction`` of them (at least one) to val."""
    patients = sorted(set(patients))
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction}")
    if len(patients) < 2:
        raise DataError(None, f"the Training split has {len(patients)} patient(s) with a CC/MLO pair; training "
                              "and validation need at least two")
    order = np.random.default_rng(seed).permutation(len(patients))
    n_val = min(max(int(round(val_fraction * len(patients))), 1), len(patients) - 1)
    val = {patients[i] for i in order[:n_val]}
    return {p: ("val" if p in val else "train") for p in patients}


@dataclass
class PreparedPairs:
    """The arrays of ``pairs.npz`` (:data:`ARRAYS`) and the table of ``pairs.csv``."""

    arrays: dict[str, np.ndarray]
    table: pd.DataFrame
    summary: dict


def _relative(path, raw_root: Path) -> str:
    """A file of the dataset as a path below its raw directory: the table is the same wherever the copy lies."""
    return Path(path).relative_to(raw_root).as_posix()


def _lesion_table(raw_root: Path, excluded: list[str] | None) -> pd.DataFrame:
    paths = cbis_ddsm.case_description_paths(raw_root)
    table = cbis_ddsm.read_case_descriptions(paths)
    resolved = cbis_ddsm.resolve_files(table, raw_root)
    return cbis_ddsm.with_lesion_boxes(resolved, excluded)


def prepare(raw_root: str | Path, *, longest_side: int, aspect: float, pairing_rule: str, val_fraction: float,
            seed: int, mirror_side: str | None = "LEFT", exclude_bad_masks: bool = False,
            progress: bool = True) -> PreparedPairs:
    """Every CC/MLO lesion pair of a CBIS-DDSM copy at the working size (see the module docstring).

    A CC lesion without an MLO partner is skipped and counted (``summary``);
    an empty or misfitting ROI mask is an error unless ``exclude_bad_masks``,
    which drops the lesion and lists it in ``summary["excluded"]``.
    """
    if mirror_side not in (None, *cbis_ddsm.SIDES):
        raise ConfigError(f"mirror_side must be one of {', '.join(cbis_ddsm.SIDES)} or null, got {mirror_side!r}")
    raw_root = Path(raw_root)
    canvas = Canvas.from_config(longest_side, aspect)
    excluded: list[str] | None = [] if exclude_bad_masks else None
    lesions = _lesion_table(raw_root, excluded)
    paired = cbis_ddsm.pair_views(lesions, pairing_rule)
    pairs = paired.pairs
    development = pairs.loc[pairs["split"] == "Training", "patient_id"]
    assignment = split_patients(development, val_fraction, seed)
    splits = [assignment[p] if s == "Training" else "test" for p, s in zip(pairs["patient_id"], pairs["split"])]
    if "test" not in splits:
        raise DataError(raw_root, "no CC/MLO pair in the Test split: the study evaluates on the official Test cases")

    arrays = {name: [] for name in ARRAYS}
    rows = []
    views_cache: dict[tuple[str, str], WorkingView] = {}
    bar = progress_bar(total=len(pairs), desc="pairs", enabled=progress)
    for (_, pair), split in zip(pairs.iterrows(), splits):
        row = {"pair": pair["pair"], "split": split, "patient_id": pair["patient_id"], "side": pair["side"],
               "abnormality_type": pair["abnormality_type"], "pathology": pair["pathology"]}
        for view in VIEWS:
            box = [pair[f"{view}_box_{c}"] for c in ("x1", "y1", "x2", "y2")]
            key = (str(pair[f"{view}_image_file"]), str(box))
            if key not in views_cache:
                views_cache[key] = working_view(pair[f"{view}_image_file"], box, pair["side"], canvas, mirror_side)
            worked = views_cache[key]
            arrays[view].append(worked.image)
            arrays[f"{view}_region"].append(worked.region)
            arrays[f"{view}_box"].append(worked.box)
            row.update({
                f"{view}_image_file": _relative(pair[f"{view}_image_file"], raw_root),
                f"{view}_roi_mask_file": _relative(pair[f"{view}_roi_mask_file"], raw_root),
                f"{view}_abnormality_id": int(pair[f"{view}_abnormality_id"]),
                f"{view}_rows": int(pair[f"{view}_image_rows"]), f"{view}_columns": int(pair[f"{view}_image_columns"]),
                f"{view}_mirrored": bool(worked.mirrored),
                **{f"{view}_box_{c}": int(pair[f"{view}_box_{c}"]) for c in ("x1", "y1", "x2", "y2")},
                **{f"{view}_work_{c}": float(v) for c, v in zip(("x1", "y1", "x2", "y2"), worked.box)},
            })
        arrays["pair"].append(pair["pair"])
        arrays["split"].append(split)
        rows.append(row)
        bar.update(1)
    bar.close()
    stacked = {
        "cc": np.stack(arrays["cc"]).astype(np.float32), "mlo": np.stack(arrays["mlo"]).astype(np.float32),
        "cc_region": np.stack(arrays["cc_region"]), "mlo_region": np.stack(arrays["mlo_region"]),
        "cc_box": np.stack(arrays["cc_box"]).astype(np.float32), "mlo_box": np.stack(arrays["mlo_box"]).astype(np.float32),
        "pair": np.asarray(arrays["pair"], dtype=str), "split": np.asarray(arrays["split"], dtype=str),
    }
    counts = {s: int(np.sum(stacked["split"] == s)) for s in SPLITS}
    summary = {
        "pairs": len(rows), **{f"{s}_pairs": n for s, n in counts.items()},
        "unpaired_cc": int(paired.unpaired_cc), "unpaired_mlo": int(paired.unpaired_mlo),
        "pairing_rule": pairing_rule, "canvas": list(canvas.shape), "mirror_side": mirror_side,
        "excluded": list(excluded or []),
    }
    for split in ("train", "val"):
        if counts[split] == 0:
            raise DataError(raw_root, f"no CC/MLO pair in the {split} split; lower or raise val_fraction")
    return PreparedPairs(stacked, pd.DataFrame(rows), summary)


def write_prepared(prepared: PreparedPairs, npz_path: str | Path, csv_path: str | Path) -> None:
    """Both files, each written completely and then renamed into place."""
    with atomic_path(npz_path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **prepared.arrays)
    write_csv(csv_path, prepared.table)


def load_pairs(path: str | Path, split: str | None = None) -> dict[str, np.ndarray]:
    """The arrays of ``pairs.npz`` (:data:`ARRAYS`), all pairs or those of one split; a bad file is a DataError."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in ARRAYS}
    except FileNotFoundError as exc:
        raise DataError(path, "prepared pairs not found; run the prepare step") from exc
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(path, f"not a prepared-pairs file ({exc}); delete it and run the prepare step") from exc
    if split is None:
        return arrays
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    keep = arrays["split"] == split
    if not keep.any():
        raise DataError(path, f"no pair in the {split!r} split")
    return {name: value[keep] for name, value in arrays.items()}
