"""Labels, splits and tissue samples of the base images (the paper's data preparation and Table 1).

* **Labels**: an annotation with BI-RADS assessment >= 2 marks findings present (positive); assessment 1 is
  negative, as are normal cases; assessment 0 (incomplete: further imaging needed) is neither, so no sample is
  centred on it and no negative sample may touch it. A view is positive when it holds a positive annotation,
  negative when it holds none and no assessment-0 one, and left out otherwise.
* **Splits** by patient (a DDSM case), never by view or patch: held-out cases are drawn, seeded, until the test
  and validation sets can be balanced as in Table 1 (positive and negative tissue patches; positive and negative
  CC mammograms); the rest train.
* **Samples** (native crop coordinates, one set for every magnification so that the classifiers are compared on
  the same tissue): positives at the centre of mass of each positive annotation (in training, annotations larger
  than ``max_positive_extent`` native pixels are left out); negatives on a grid of ``negative_stride`` native
  pixels wherever the square field of the coarsest magnification's patch meets no annotation of any kind.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

SPLITS = ("train", "val", "test")
POSITIVE, NEGATIVE, UNKNOWN = "positive", "negative", "unknown"


def annotation_label(assessment: int) -> str:
    """Findings present (>= 2), negative (1) or unknown (0, incomplete)."""
    return POSITIVE if assessment >= 2 else NEGATIVE if assessment == 1 else UNKNOWN


def view_label(labels: list[str]) -> str | None:
    """A view's label from its annotations' labels: positive, negative, or None (only uncertain findings)."""
    if POSITIVE in labels:
        return POSITIVE
    return None if UNKNOWN in labels else NEGATIVE


@dataclass(frozen=True)
class HeldOut:
    """What the test or validation split must balance: tissue patches and CC mammograms per class."""

    patches: int
    mammograms: int


def split_cases(views: pd.DataFrame, annotations: pd.DataFrame, test: HeldOut, val: HeldOut,
                seed: int) -> dict[str, str]:
    """case -> split. Held-out cases are drawn in a seeded order, abnormal and normal ones separately, until the
    split holds ``patches`` positive annotations and ``mammograms`` positive CC views (abnormal cases), and
    ``mammograms`` negative CC views (normal cases; negative patches abound in every case)."""
    rng = np.random.default_rng(seed)
    positives = annotations[annotations["label"] == POSITIVE].groupby("case").size()
    cc = views[views["projection"] == "CC"]
    positive_cc = cc[cc["label"] == POSITIVE].groupby("case").size()
    negative_cc = cc[cc["label"] == NEGATIVE].groupby("case").size()
    abnormal = sorted(set(positives.index))
    normal = sorted(set(views["case"]) - set(abnormal))
    rng.shuffle(abnormal)
    rng.shuffle(normal)
    split = {}
    for name, wanted in (("test", test), ("val", val)):
        taken_patches = taken_positive = 0
        while abnormal and (taken_patches < wanted.patches or taken_positive < wanted.mammograms):
            case = abnormal.pop()
            split[case] = name
            taken_patches += int(positives.get(case, 0))
            taken_positive += int(positive_cc.get(case, 0))
        taken_negative = 0
        while normal and taken_negative < wanted.mammograms:
            case = normal.pop()
            split[case] = name
            taken_negative += int(negative_cc.get(case, 0))
    for case in abnormal + normal:
        split[case] = "train"
    return split


def field_is_free(blocked: np.ndarray, field: int) -> np.ndarray:
    """Where a ``field`` x ``field`` square centred on a pixel meets no blocked pixel (outside the image is free)."""
    counts = ndi.uniform_filter(blocked.astype(np.float64), size=field, mode="constant", cval=0.0)
    return counts * field * field < 0.5


def negative_positions(blocked: np.ndarray, stride: int, field: int) -> np.ndarray:
    """(row, col) on a grid of ``stride`` whose ``field`` square meets no annotation (``blocked``)."""
    free = field_is_free(blocked, field)
    offset = stride // 2
    rows, cols = np.meshgrid(np.arange(offset, blocked.shape[0], stride), np.arange(offset, blocked.shape[1], stride),
                             indexing="ij")
    keep = free[rows, cols]
    return np.column_stack([rows[keep], cols[keep]])


def balanced(frame: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` rows drawn without replacement (all of them when there are fewer), in their original order."""
    if len(frame) <= n:
        return frame
    return frame.iloc[np.sort(rng.choice(len(frame), n, replace=False))]


def tissue_samples(views: pd.DataFrame, annotations: pd.DataFrame, blocked: np.ndarray, split: dict[str, str], *,
                   negative_stride: int, field: int, max_positive_extent: int, held_out: dict[str, HeldOut],
                   seed: int) -> pd.DataFrame:
    """Every tissue sample: view, split, position (native crop row, col), label (1 findings, 0 none), the
    annotation it is centred on (-1 for grid negatives). Training keeps all (large annotations left out);
    validation and test are balanced draws of ``held_out[split].patches`` per class."""
    rng = np.random.default_rng(seed)
    frames = []
    positive = annotations[(annotations["label"] == POSITIVE) & annotations["in_crop"].astype(bool)]
    frames.append(pd.DataFrame({"view_id": positive["view_id"], "row": positive["centre_row"].round().astype(int),
                                "col": positive["centre_col"].round().astype(int), "label": 1,
                                "annotation": positive["number"],
                                "extent": positive[["height", "width"]].max(axis=1)}))
    for view_id in views["view_id"]:
        grid = negative_positions(blocked[view_id], negative_stride, field)
        frames.append(pd.DataFrame({"view_id": view_id, "row": grid[:, 0], "col": grid[:, 1], "label": 0,
                                    "annotation": -1, "extent": 0}))
    table = pd.concat(frames, ignore_index=True)
    table["case"] = views.set_index("view_id").loc[table["view_id"], "case"].to_numpy()
    table["split"] = table["case"].map(split)
    training = table[(table["split"] == "train") & ((table["label"] == 0) | (table["extent"] <= max_positive_extent))]
    parts = [training]
    for name in ("val", "test"):
        pool = table[table["split"] == name]
        positives = balanced(pool[pool["label"] == 1], held_out[name].patches, rng)
        parts += [positives, balanced(pool[pool["label"] == 0], len(positives), rng)]
    out = pd.concat(parts).sort_values(["split", "view_id", "label", "row", "col"], kind="stable")
    return out[["split", "case", "view_id", "row", "col", "label", "annotation", "extent"]].reset_index(drop=True)


def mammograms(views: pd.DataFrame, split: dict[str, str], held_out: dict[str, HeldOut], seed: int) -> pd.DataFrame:
    """The full CC mammograms of each split with their labels: every labelled one in training; balanced draws of
    ``held_out[split].mammograms`` per class for validation and test."""
    rng = np.random.default_rng(seed)
    cc = views[(views["projection"] == "CC") & views["label"].isin([POSITIVE, NEGATIVE])].copy()
    cc["split"] = cc["case"].map(split)
    cc["label"] = (cc["label"] == POSITIVE).astype(int)
    parts = [cc[cc["split"] == "train"]]
    for name in ("val", "test"):
        pool = cc[cc["split"] == name]
        for label in (1, 0):
            parts.append(balanced(pool[pool["label"] == label], held_out[name].mammograms, rng))
    out = pd.concat(parts).sort_values(["split", "view_id"], kind="stable")
    return out[["split", "case", "view_id", "view", "label"]].reset_index(drop=True)
