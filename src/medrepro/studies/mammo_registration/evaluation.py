"""Per-pair evaluation of a CC-to-MLO registration: the lesion boxes and how well they meet.

For each test pair the MLO's lesion box and the registered CC's box (both in
the MLO's pixel grid at the working size, x = column, far edge exclusive; see
:mod:`medrepro.spatial.boxes`) give IoU, the GIoU loss ``1 - GIoU`` (the paper's
evaluation metric), whether the boxes share a positive area (the paper's
overlap rate counts these; boxes that only touch do not overlap), and the
distance between the box centres in pixels. The masked MSE of the pair's
images is computed by the caller and carried along.

One row per pair in ``results/mammo_registration/eval/{method}.csv`` with the
columns :data:`EVAL_COLUMNS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from medrepro.spatial import boxes
from medrepro.data.atomic import write_csv
from medrepro.errors import DataError
from medrepro.data.io.csv_files import read_csv_file
from medrepro.report.tables import require_columns

EVAL_COLUMNS = [
    "pair", "mlo_x1", "mlo_y1", "mlo_x2", "mlo_y2", "cc_x1", "cc_y1", "cc_x2", "cc_y2",
    "iou", "giou_loss", "overlap", "centre_distance_px", "masked_mse",
]
SCORE_COLUMNS = ("iou", "giou_loss", "overlap", "centre_distance_px", "masked_mse")


def _checked_boxes(values, name: str) -> np.ndarray:
    """Boxes as float64 ``(N, 4)``; a non-finite or inverted box is a programming error upstream."""
    array = np.asarray(values, dtype=np.float64)
    array = array.reshape(1, -1) if array.ndim == 1 else array
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{name} must be (4,) or (N, 4) as x1, y1, x2, y2; got shape {np.shape(values)}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} has a non-finite coordinate: {array[~np.isfinite(array).all(axis=1)][0].tolist()}")
    inverted = (array[:, 2] < array[:, 0]) | (array[:, 3] < array[:, 1])
    if inverted.any():
        raise ValueError(f"{name} has a box with x2 < x1 or y2 < y1: {array[inverted][0].tolist()}")
    return array


def score_pairs(
    pairs: Sequence[str],
    mlo_boxes: np.ndarray,
    cc_boxes_registered: np.ndarray,
    masked_mses: Sequence[float],
) -> pd.DataFrame:
    """One row per pair with :data:`EVAL_COLUMNS`: boxes, IoU, GIoU loss, overlap (0/1), centre distance, MSE.

    ``mlo_boxes`` and ``cc_boxes_registered`` are ``(N, 4)`` in the MLO's
    pixel grid; ``masked_mses`` the N precomputed masked MSEs. Pair names must
    be unique (they key the paired tests between methods).
    """
    pairs = [str(p) for p in pairs]
    mlo = _checked_boxes(mlo_boxes, "mlo_boxes")
    cc = _checked_boxes(cc_boxes_registered, "cc_boxes_registered")
    mse = np.asarray(masked_mses, dtype=np.float64).reshape(-1)
    if not (len(pairs) == len(mlo) == len(cc) == len(mse)):
        raise ValueError(f"lengths differ: {len(pairs)} pairs, {len(mlo)} MLO boxes, {len(cc)} CC boxes, "
                         f"{len(mse)} masked MSEs")
    duplicated = pd.Index(pairs).duplicated()
    if duplicated.any():
        raise ValueError(f"pair names must be unique; {pairs[int(np.argmax(duplicated))]!r} repeats")
    frame = pd.DataFrame({"pair": pairs})
    for prefix, array in (("mlo", mlo), ("cc", cc)):
        for index, corner in enumerate(("x1", "y1", "x2", "y2")):
            frame[f"{prefix}_{corner}"] = array[:, index]
    frame["iou"] = np.asarray(boxes.box_iou(mlo, cc), dtype=np.float64)
    frame["giou_loss"] = np.asarray(boxes.giou_loss(mlo, cc), dtype=np.float64)
    frame["overlap"] = np.asarray(boxes.boxes_overlap(mlo, cc)).astype(int)
    frame["centre_distance_px"] = np.asarray(boxes.centre_distance(mlo, cc), dtype=np.float64)
    frame["masked_mse"] = mse
    return frame[EVAL_COLUMNS]


def score_pair(pair: str, mlo_box: np.ndarray, cc_box_registered: np.ndarray, masked_mse: float) -> dict:
    """The :data:`EVAL_COLUMNS` of one pair as plain Python values (floats; ``overlap`` an int 0/1)."""
    row = score_pairs([pair], mlo_box, cc_box_registered, [masked_mse]).iloc[0].to_dict()
    return {key: (row[key] if key == "pair" else int(row[key]) if key == "overlap" else float(row[key]))
            for key in EVAL_COLUMNS}


def check_scores(frame: pd.DataFrame, source=None) -> pd.DataFrame:
    """Validate a per-pair frame: the columns, unique (seed, pair), finite scores, overlap 0/1.

    Errors are ``DataError`` naming ``source`` (the CSV the frame came from).
    """
    require_columns(frame, ("pair", *SCORE_COLUMNS), source)
    keys = ["seed", "pair"] if "seed" in frame.columns else ["pair"]
    duplicated = frame.duplicated(keys)
    if duplicated.any():
        first = frame.loc[duplicated, keys].iloc[0].tolist()
        raise DataError(source, f"more than one row for ({', '.join(keys)}) = {first}; each pair must appear once "
                                "per seed")
    for column in SCORE_COLUMNS:
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(values)):
            bad = frame.loc[~np.isfinite(values), "pair"].iloc[0]
            raise DataError(source, f"column {column!r} has a missing or non-finite value (pair {bad!r}); "
                                    "re-run the evaluation step")
    if not frame["overlap"].isin([0, 1]).all():
        raise DataError(source, f"column 'overlap' must be 0 or 1, found {sorted(set(frame['overlap']) - {0, 1})}")
    return frame


def write_scores(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a per-pair frame atomically (the :data:`EVAL_COLUMNS` first, then any others such as ``seed``)."""
    check_scores(frame, path)
    columns = [c for c in EVAL_COLUMNS if c in frame.columns] + [c for c in frame.columns if c not in EVAL_COLUMNS]
    write_csv(path, frame[columns])


def read_scores(path: str | Path) -> pd.DataFrame:
    """Read and validate a per-pair CSV; a missing or malformed file is a ``DataError`` naming it."""
    frame = read_csv_file(path, "per-pair evaluation file not found; run the evaluation step first",
                          dtype={"pair": str})
    return check_scores(frame, path)


def identity_matrices(n: int) -> np.ndarray:
    """``n`` identity pixel affines: each CC pixel stays where it is on the (same-sized) MLO grid."""
    return np.repeat(np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]]), n, axis=0)


def prior_matrices(n: int, cc_shape, mlo_shape, angle_deg: float) -> np.ndarray:
    """``n`` copies of the network's rotation prior as pixel affines (what an untrained network starts from)."""
    import torch

    from .networks import centred_to_pixel, prior_parameters

    matrix = centred_to_pixel(prior_parameters(angle_deg).double().reshape(1, 2, 3), cc_shape, mlo_shape)
    return np.repeat(matrix.numpy(), n, axis=0).astype(np.float64)


def register_pairs(pairs: dict, matrices: np.ndarray, part: slice = slice(None)) -> dict[str, np.ndarray]:
    """What the pixel affines ``matrices`` (one per pair of ``pairs[part]``) make of those pairs on the MLO grid.

    ``cc``: the registered CC, float64 (n, H', W'); ``mask``: the masked
    MSE's overlap mask, where the registered CC's breast region meets the
    MLO's, bool (n, H', W'); ``cc_box``: the CC box carried by the inverse
    transform and rectified, (n, 4), the box the scores compare.
    """
    import torch

    from medrepro.spatial import warp

    from .networks import carry_cc_boxes

    matrix = torch.from_numpy(np.asarray(matrices, dtype=np.float64))
    cc = torch.from_numpy(np.asarray(pairs["cc"][part], dtype=np.float64)).unsqueeze(1)
    mlo_shape = np.shape(pairs["mlo"])[-2:]
    cc_region = torch.from_numpy(np.asarray(pairs["cc_region"][part])).unsqueeze(1)
    mlo_region = torch.from_numpy(np.asarray(pairs["mlo_region"][part])).unsqueeze(1)
    mask = warp.overlap_mask(cc.shape[-2:], matrix, mlo_shape, mlo_region, cc_region)
    warped = warp.affine_warp(cc, matrix, mlo_shape)
    cc_box = torch.from_numpy(np.asarray(pairs["cc_box"][part], dtype=np.float64))
    return {"cc": warped[:, 0].numpy(), "mask": mask[:, 0].numpy(), "cc_box": carry_cc_boxes(matrix, cc_box).numpy()}


def evaluate_matrices(pairs: dict, matrices: np.ndarray, batch_size: int = 16) -> pd.DataFrame:
    """Score pixel affines (N, 2, 3) on the pairs they register (arrays of :func:`.preprocess.load_pairs`).

    The CC box is carried onto the MLO grid by the inverse transform and
    rectified; the masked MSE is eq. 2's over the overlap of the registered
    CC's breast region with the MLO's (the training loss's mask); both from
    :func:`register_pairs`.
    """
    import torch

    from medrepro.nn import losses

    matrices = np.asarray(matrices, dtype=np.float64)
    n = len(pairs["pair"])
    if matrices.shape != (n, 2, 3):
        raise ValueError(f"expected {n} matrices of shape (2, 3), got {matrices.shape}")
    if not np.all(np.isfinite(matrices)):
        raise ValueError("a registration matrix has a non-finite entry")
    carried, mses = [], []
    for start in range(0, n, batch_size):
        part = slice(start, min(start + batch_size, n))
        registered = register_pairs(pairs, matrices[part], part)
        mlo = torch.from_numpy(np.asarray(pairs["mlo"][part], dtype=np.float64)).unsqueeze(1)
        warped, mask = (torch.from_numpy(registered[name]).unsqueeze(1) for name in ("cc", "mask"))
        mses.append(losses.masked_mse(warped, mlo, mask, reduction="none").numpy())
        carried.append(registered["cc_box"])
    return score_pairs(pairs["pair"], pairs["mlo_box"], np.concatenate(carried), np.concatenate(mses))
