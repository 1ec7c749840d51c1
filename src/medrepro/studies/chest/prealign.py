"""Pre-alignment of a chest X-ray dataset onto one reference image.

As in the paper (Sec. 4.1), every image is padded to a square with background,
then registered to a reference image of its dataset with an elastix similarity
transform; the labels follow with the same transform (nearest neighbour).
Everything is finally resampled to the study's working size S (256 in the
paper's experiments).

Resampling between sizes never uses point sampling, which would alias:
images shrink by area averaging (each output pixel is the mean of the input
area it covers) and grow by linear interpolation; label maps are resized as
one indicator channel per label with the same weights, then the label with
the largest share wins each pixel. That keeps every label in the input's
set and keeps structures that are thin at the output size from breaking up
the way nearest-neighbour subsampling breaks them.

Registration runs in pixel units (no spacing given to elastix), as the
authors ran elastix on PNG files; the physical spacing is only carried along
for the distance metrics.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
from scipy import sparse

from medrepro.data.atomic import write_text
from medrepro.errors import ConfigError, DataError
from medrepro.studies.chest.subjects import LEFT_LUNG, RIGHT_LUNG, Subject
from medrepro.pipeline.progress import progress_bar
from medrepro.spatial import elastix
from medrepro.studies.chest.parameters import published_map

log = logging.getLogger(__name__)

REFERENCE_RULES = ("median_area", "first")
LUNG_LABELS = (RIGHT_LUNG, LEFT_LUNG)


# ---------------------------------------------------------------- geometry
def pad_to_square(image: np.ndarray, labels: np.ndarray, fill: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Pad the shorter side with background so both arrays become square.

    The image keeps its centre: the padding is split evenly, the odd pixel
    going after (below / right). Padded pixels get ``fill`` in the image and
    label 0 in the label map.
    """
    image, labels = np.asarray(image), np.asarray(labels)
    if image.ndim != 2 or image.shape != labels.shape:
        raise ValueError(f"image {image.shape} and labels {labels.shape} must be 2-D arrays of one shape")
    rows, cols = image.shape
    side = max(rows, cols)
    before = ((side - rows) // 2, (side - cols) // 2)
    widths = ((before[0], side - rows - before[0]), (before[1], side - cols - before[1]))
    return (np.pad(image, widths, mode="constant", constant_values=fill),
            np.pad(labels, widths, mode="constant", constant_values=0))


@lru_cache(maxsize=32)
def _axis_weights(n_in: int, n_out: int) -> sparse.csr_matrix:
    """Sparse (n_out, n_in) resampling weights along one axis; rows sum to 1.

    Shrinking: exact area weights (overlap of output pixel j with input pixel i,
    computed in integers, in units of 1/n_out of an input pixel). Growing:
    linear interpolation between pixel centres, clamped at the borders.
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be positive, got {n_in} -> {n_out}")
    if n_out == n_in:
        return sparse.identity(n_in, format="csr", dtype=np.float64)
    rows, cols, values = [], [], []
    if n_out < n_in:
        for j in range(n_out):
            lo, hi = j * n_in, (j + 1) * n_in  # output pixel j, in 1/n_out input-pixel units
            for i in range(lo // n_out, -(-hi // n_out)):
                overlap = min(hi, (i + 1) * n_out) - max(lo, i * n_out)
                if overlap > 0:
                    rows.append(j), cols.append(i), values.append(overlap / n_in)
    else:
        centres = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        left = np.floor(centres).astype(int)
        right = np.minimum(left + 1, n_in - 1)
        frac = centres - left
        rows = np.concatenate([np.arange(n_out), np.arange(n_out)])
        cols = np.concatenate([left, right])
        values = np.concatenate([1 - frac, frac])
    return sparse.csr_matrix((values, (rows, cols)), shape=(n_out, n_in))


def _resample(array: np.ndarray, size: int) -> np.ndarray:
    weights_rows = _axis_weights(array.shape[0], size)
    weights_cols = _axis_weights(array.shape[1], size)
    return np.asarray((weights_cols @ (weights_rows @ array).T).T)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to ``size`` x ``size``: area averaging when shrinking, linear when growing."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {image.shape}")
    if image.shape == (size, size):
        return image.astype(np.float32, copy=True)
    return _resample(image.astype(np.float64), size).astype(np.float32)


def resize_labels(labels: np.ndarray, size: int) -> np.ndarray:
    """Resize a label map to ``size`` x ``size`` via per-label shares, then argmax.

    Each label's indicator image is resampled like an image
    (:func:`resize_image`); a pixel takes the label with the largest share.
    Ties go to the larger label value, so foreground beats background.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D, got shape {labels.shape}")
    if labels.shape == (size, size):
        return labels.astype(np.uint8, copy=True)
    best_share = np.full((size, size), -1.0)
    best_label = np.zeros((size, size), dtype=np.uint8)
    for value in np.unique(labels):  # ascending: a later (larger) label wins a tie
        share = _resample((labels == value).astype(np.float64), size)
        wins = share >= best_share - 1e-9
        best_share[wins] = share[wins]
        best_label[wins] = value
    return best_label


# ---------------------------------------------------------------- reference
def lung_field_fraction(subject: Subject) -> float:
    """Share of the padded square frame covered by the lung fields (labels 1 and 2)."""
    side = max(subject.labels.shape)
    return float(np.isin(subject.labels, LUNG_LABELS).sum()) / float(side * side)


def choose_reference(subjects: Sequence[Subject], rule: str | None = None) -> str:
    """Pick the subject every image is pre-aligned to.

    - ``None`` or ``"median_area"`` (default): the subject whose lung-field
      share of the square frame (:func:`lung_field_fraction`) is closest to the
      dataset median, i.e. a typical framing of the chest, so that the
      similarity transforms stay small; ties go to the first name.
    - ``"first"``: the first subject by name.
    - any other string: that subject's name (ConfigError when absent).

    The paper does not say which image the authors took.
    """
    if not subjects:
        raise ConfigError("cannot choose a reference from an empty dataset")
    names = sorted(s.name for s in subjects)
    if rule is None or rule == "median_area":
        fractions = {s.name: lung_field_fraction(s) for s in subjects}
        median = float(np.median(list(fractions.values())))
        return min(names, key=lambda name: (abs(fractions[name] - median), name))
    if rule == "first":
        return names[0]
    if rule in names:
        return rule
    raise ConfigError(f"reference {rule!r} is neither a rule {REFERENCE_RULES} nor a subject name "
                      f"(first names: {names[:5]})")


# -------------------------------------------------------------- pre-alignment
def _check_subject(subject: Subject) -> None:
    if subject.image.ndim != 2 or subject.image.shape != subject.labels.shape:
        raise DataError(subject.name, f"image {subject.image.shape} and labels {subject.labels.shape} "
                                      "must be 2-D arrays of one shape")


def _check_size(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 8:
        raise ConfigError(f"{name} must be an integer of at least 8 pixels, got {value!r}")


def clip_to(warped: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Clip cubic-interpolation overshoot back to the source range (0 included: the fill value)."""
    low, high = min(float(source.min()), 0.0), max(float(source.max()), 0.0)
    return np.clip(warped, low, high).astype(np.float32, copy=False)


def _spacing_at(subject: Subject, side: int, size: int) -> tuple[float, float]:
    """mm per pixel after the padded ``side`` x ``side`` frame is resized to ``size``."""
    if subject.spacing is None:
        return (math.nan, math.nan)
    return (subject.spacing[0] * side / size, subject.spacing[1] * side / size)


def _write_similarity_table(rows: list[dict], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def prealign_subjects(
    subjects: Sequence[Subject],
    reference_name: str,
    out_size: int,
    work_size: int | None = None,
    parameter_map: Mapping[str, Sequence[str]] | None = None,
    threads: int | None = None,
    log_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Pre-align every subject to ``reference_name``; the arrays of the prealigned file.

    Per subject: pad to square, resize to ``work_size`` (None: keep the native
    size, as the paper did; elastix on 1024+ pixel images is slow), register
    to the reference with ``parameter_map`` (default: the built-in similarity
    map; the reference itself is taken as is), carry the labels along with
    nearest neighbour, resize image and labels to ``out_size``.

    Returns ``images`` (N, S, S) float32 in the input range, ``labels``
    (N, S, S) uint8, ``names`` (N,) in input order, ``spacing`` (N, 2) mm per
    pixel at S (the subject's own pixel size scaled by its padded side / S;
    the small similarity scale is not folded in; NaN when unknown) and
    ``reference``; ready for :func:`medrepro.studies.chest.prealigned.save_prealigned`.
    With ``log_dir``, elastix logs go to ``log_dir/<name>/`` and the found
    similarity parameters to ``log_dir/similarity_parameters.csv``.
    """
    _check_size("out_size", out_size)
    _check_size("work_size", work_size, allow_none=True)
    if work_size is not None and work_size < out_size:
        log.warning("work_size %d < out_size %d: pre-aligned images are upsampled and lose detail",
                    work_size, out_size)
    by_name = {s.name: s for s in subjects}
    if len(by_name) != len(subjects):
        raise ConfigError("subject names must be unique")
    if reference_name not in by_name:
        raise ConfigError(f"reference {reference_name!r} is not one of the {len(subjects)} subjects")
    for subject in subjects:
        _check_subject(subject)
    pmap = published_map("similarity") if parameter_map is None else parameter_map
    log_dir = None if log_dir is None else Path(log_dir)

    ref_image, ref_labels = _working_copy(by_name[reference_name], work_size)
    images = np.empty((len(subjects), out_size, out_size), dtype=np.float32)
    labels = np.empty((len(subjects), out_size, out_size), dtype=np.uint8)
    spacing = np.empty((len(subjects), 2), dtype=np.float64)
    table = []
    bar = progress_bar(subjects, enabled=progress, desc="similarity pre-alignment", unit="image")
    for k, subject in enumerate(bar):
        side = max(subject.image.shape)
        if subject.name == reference_name:
            warped, warped_labels, row = ref_image, ref_labels, _identity_row()
        else:
            warped, warped_labels, row = _align_one(subject, ref_image, work_size, pmap, threads,
                                                    None if log_dir is None else log_dir / subject.name)
        images[k] = clip_to(resize_image(warped, out_size), warped)
        labels[k] = resize_labels(warped_labels, out_size)
        spacing[k] = _spacing_at(subject, side, out_size)
        table.append({"name": subject.name, **row})
    if log_dir is not None:
        _write_similarity_table(table, log_dir / "similarity_parameters.csv")
    return {
        "images": images,
        "labels": labels,
        "names": np.array([s.name for s in subjects], dtype=str),
        "spacing": spacing,
        "reference": reference_name,
    }


def _working_copy(subject: Subject, work_size: int | None) -> tuple[np.ndarray, np.ndarray]:
    image, labels = pad_to_square(subject.image.astype(np.float32), subject.labels)
    if work_size is None:
        return image, labels.astype(np.uint8)
    return resize_image(image, work_size), resize_labels(labels, work_size)


def _identity_row() -> dict:
    return {"scale": 1.0, "angle_deg": 0.0, "translation_row": 0.0, "translation_col": 0.0, "seconds": 0.0}


def _align_one(subject: Subject, ref_image: np.ndarray, work_size: int | None, pmap, threads,
               log_dir: Path | None) -> tuple[np.ndarray, np.ndarray, dict]:
    image, labels = _working_copy(subject, work_size)
    result = elastix.register(ref_image, image, pmap, log_dir=log_dir, threads=threads)
    warped_labels = elastix.transform_labels(labels, result.transform)
    return clip_to(result.warped, image), warped_labels, _similarity_row(result)


def _similarity_row(result: elastix.RegistrationResult) -> dict:
    row = {"seconds": result.seconds}
    try:
        found = elastix.similarity_parameters(result.transform)
        row = {"scale": found["scale"], "angle_deg": found["angle_deg"],
               "translation_row": found["translation"][0], "translation_col": found["translation"][1], **row}
    except ValueError:  # a non-similarity map was configured: nothing to tabulate
        row = {"scale": math.nan, "angle_deg": math.nan, "translation_row": math.nan,
               "translation_col": math.nan, **row}
    return row


def working_image(image: np.ndarray, work_size: int | None) -> np.ndarray:
    """``image`` padded to a square and resized to ``work_size``: the frame elastix works in."""
    _check_size("work_size", work_size, allow_none=True)
    if image.ndim != 2 or not np.isfinite(image).all():
        raise ValueError(f"expected a finite 2-D image, got shape {image.shape}")
    square, _ = pad_to_square(image.astype(np.float32), np.zeros(image.shape, dtype=np.uint8))
    return square if work_size is None else resize_image(square, work_size)


def prealign_images(
    images: Iterable[tuple[str, np.ndarray]],
    ref_image: np.ndarray,
    out_size: int,
    work_size: int | None,
    parameter_map: Mapping[str, Sequence[str]],
    threads: int | None = None,
    progress: bool = True,
    total: int | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """Pre-align unlabelled ``(name, image)`` pairs onto ``ref_image``, as :func:`prealign_subjects` does.

    ``ref_image`` is the reference already in the working frame
    (:func:`working_image` at ``work_size``), so new images land on the same
    grid as a pre-aligned dataset (the atlases of multi-atlas segmentation).
    Images are consumed one at a time, so a shard of a large set never sits in
    memory at native size. Returns (N, S, S) float32 and one row of similarity
    parameters per image; an image elastix fails on is kept unaligned
    (``aligned`` False), so that quality control, not a crash, deals with it.
    """
    _check_size("out_size", out_size)
    aligned, rows = [], []
    bar = progress_bar(images, enabled=progress, desc="similarity pre-alignment", unit="image", total=total)
    for name, image in bar:
        work = working_image(image, work_size)
        if work.shape != ref_image.shape:
            raise DataError(name, f"working frame {work.shape} differs from the reference's {ref_image.shape}")
        try:
            result = elastix.register(ref_image, work, parameter_map, threads=threads)
        except RuntimeError as exc:  # e.g. a blank image: one bad image must not stop a large run
            log.warning("%s: elastix failed (%s); kept unaligned", name, str(exc).strip().splitlines()[-1:])
            aligned.append(clip_to(resize_image(work, out_size), work))
            rows.append({"name": name, "aligned": False, **_identity_row()})
            continue
        aligned.append(clip_to(resize_image(clip_to(result.warped, work), out_size), work))
        rows.append({"name": name, "aligned": True, **_similarity_row(result)})
    stack = np.stack(aligned) if aligned else np.empty((0, out_size, out_size), dtype=np.float32)
    return stack.astype(np.float32, copy=False), rows
