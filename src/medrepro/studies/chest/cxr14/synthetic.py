"""Synthetic NIH ChestX-ray14 stand-in, written in the real layout.

What it writes under the raw directory::

    images/00000001_000.png      image_size x image_size 8-bit grey (real: 1024 x 1024)
    Data_Entry_2017.csv          the real 11-field table, header verbatim
    synthetic_truth.csv          per image: CTR, cardiomegaly, quality, degradation, pose
    MANIFEST.sha256              every file's digest, for the obtain step

The images are the chest phantoms of :mod:`medrepro.studies.chest.synthetic`.
Each patient is one phantom subject (anatomy and non-rigid shape), seen in a
few follow-up images that differ in pose and exposure, as repeat radiographs
of one person do; the cardiothoracic ratio is therefore a patient property.

Labels follow the phantom where the image can show it and the real table
elsewhere: ``Cardiomegaly`` is present if and only if the CTR exceeds 0.5;
the label strings themselves (with the view position, original size and
pixel spacing) are copied from a seeded draw of real rows of the published
table, from rows with Cardiomegaly for enlarged hearts and from rows without
it otherwise, so ``No Finding`` (about 55%) and the co-findings keep their
real mix. Findings other than cardiomegaly are labels only, not drawn.

A ``poor_fraction`` of the images is degraded the way radiographs that a
segmentation quality control should reject are: inverted polarity, a field
of view cropping the lungs, a very low dose (heavy noise and blur), a large
rotation, or a collimation cutting into the lungs.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from medrepro.data.atomic import atomic_dir, atomic_path, write_csv
from medrepro.data.sourcing import MANIFEST_FILE, write_manifest
from medrepro.studies.chest.synthetic import (
    CARDIOMEGALY_CTR,
    LOOKS,
    TRUTH_FILE,
    Placement,
    Pose,
    SyntheticSubject,
    _refuse_to_replace_real_data,
    organ_masks,
    render_image,
    sample_exposure,
    sample_subject,
    subject_rng,
)
from medrepro.errors import ConfigError
from medrepro.studies.chest.cxr14 import dataset as cxr14
from medrepro.data.io.png import write_grey_png

log = logging.getLogger(__name__)

DATASET = "ChestX-ray14"
GOOD, POOR = "good", "poor"
NO_DEGRADATION = "none"
DEGRADATIONS = ("inverted", "cropped", "low_dose", "rotated", "collimated")
MAX_FOLLOW_UPS = 6
NEW_PATIENT_PROBABILITY = 0.45  # geometric images per patient: about half have one, as in the real set
MIN_IMAGE_SIZE = 64
# wider exposure than the registration sets' (portable AP films vary more)
PORTABLE_EXPOSURE = {"gain": (0.8, 1.2), "offset_sd": 0.04, "gamma_log_sd": 0.2, "noise": (0.004, 0.015)}
_ORIGINAL_COLUMNS = cxr14.HEADER[7:]  # original width, height, spacing x, y
_COPIED_COLUMNS = ("Finding Labels", "View Position", *_ORIGINAL_COLUMNS)


# ---------------------------------------------------------------- plan


def image_name(patient: int, follow_up: int) -> str:
    return f"{patient:08d}_{follow_up:03d}.png"


def plan_images(n_images: int, seed: int) -> list[tuple[int, int]]:
    """(patient, follow-up) pairs: patients numbered from 1, each with 1..MAX_FOLLOW_UPS images."""
    rng = np.random.default_rng([int(seed), 14])
    pairs: list[tuple[int, int]] = []
    patient = 0
    while len(pairs) < n_images:
        patient += 1
        count = min(int(rng.geometric(NEW_PATIENT_PROBABILITY)), MAX_FOLLOW_UPS, n_images - len(pairs))
        pairs.extend((patient, follow_up) for follow_up in range(count))
    return pairs


def degradation_plan(n_images: int, poor_fraction: float, seed: int) -> list[str]:
    """Per image ``none`` or a degradation: exactly round(n * poor_fraction) poor ones, the kinds in turn."""
    rng = np.random.default_rng([int(seed), 15])
    n_poor = int(round(n_images * poor_fraction))
    chosen = sorted(rng.permutation(n_images)[:n_poor].tolist())
    start = int(rng.integers(len(DEGRADATIONS)))
    kinds = [NO_DEGRADATION] * n_images
    for i, index in enumerate(chosen):
        kinds[index] = DEGRADATIONS[(start + i) % len(DEGRADATIONS)]
    return kinds


@functools.lru_cache(maxsize=1)
def label_pools() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Real rows of the published table (labels, view, original size, spacing): without and with Cardiomegaly."""
    table = cxr14.read_label_table(cxr14.published_path(cxr14.PUBLISHED_TABLE))
    enlarged = cxr14.has_finding(table["Finding Labels"], "Cardiomegaly")
    rows = table.loc[:, list(_COPIED_COLUMNS)]
    return rows[~enlarged].reset_index(drop=True), rows[enlarged].reset_index(drop=True)


def _real_row(rng: np.random.Generator, cardiomegaly: bool) -> dict:
    pool = label_pools()[int(cardiomegaly)]
    return pool.iloc[int(rng.integers(len(pool)))].to_dict()


# ---------------------------------------------------------------- degradations


def _degraded_pose(pose: Pose, kind: str, shape: tuple[int, int], rng: np.random.Generator) -> Pose:
    """Geometric degradations act on the pose, so the phantom is rendered partly outside the field."""
    if kind == "rotated":
        return dataclasses.replace(pose, rotation_deg=float(rng.choice([-1, 1]) * rng.uniform(20, 35)))
    if kind == "cropped":  # magnified and shifted towards one edge, cutting off a good part of the lungs
        scale = float(rng.uniform(1.4, 1.75))
        direction = int(rng.integers(4))  # thorax moved left, right, up (apices cut) or down (bases cut)
        if direction == 3:  # the narrow costophrenic recesses hold little area: move further
            return dataclasses.replace(pose, scale=scale, shift_row=float(rng.uniform(0.34, 0.44)) * shape[0])
        shift = float(rng.uniform(0.2, 0.32))
        if direction == 2:
            return dataclasses.replace(pose, scale=scale, shift_row=-shift * shape[0])
        return dataclasses.replace(pose, scale=scale, shift_col=(-shift if direction == 0 else shift) * shape[1])
    return pose


def _soft_window(n: int, lo: float, hi: float, edge: float) -> np.ndarray:
    """1 between ``lo`` and ``hi``, 0 outside, with linear ramps ``edge`` pixels wide (the penumbra)."""
    x = np.arange(n, dtype=np.float32)
    return np.clip((x - lo) / edge + 0.5, 0, 1) * np.clip((hi - x) / edge + 0.5, 0, 1)


def _low_dose(image: np.ndarray, rng: np.random.Generator, px: float) -> np.ndarray:
    blurred = ndimage.gaussian_filter(image, rng.uniform(2.0, 4.0) * px)
    flat = np.float32(0.5) + (blurred - np.float32(0.5)) * np.float32(rng.uniform(0.4, 0.7))  # little contrast
    noise = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(rng.uniform(0.12, 0.2))
    return flat + noise


def _collimated(image: np.ndarray, rng: np.random.Generator, px: float) -> np.ndarray:
    """Unexposed (bright) outside a window that cuts into the lung fields."""
    h, w = image.shape
    top, bottom = rng.uniform(0.12, 0.28) * h, rng.uniform(0.6, 0.75) * h
    left, right = rng.uniform(0.15, 0.28) * w, rng.uniform(0.72, 0.85) * w
    inside = _soft_window(h, top, bottom, 3.0 * px)[:, None] * _soft_window(w, left, right, 3.0 * px)[None, :]
    level = np.float32(rng.uniform(0.85, 0.95))
    outside = level + np.float32(0.08) * (image - image.mean())  # a little scatter still shows anatomy
    return inside * image + (1 - inside) * outside


def degrade_image(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Photometric degradations of a rendered radiograph (float32 0..1, bright = dense)."""
    px = image.shape[1] / 1024  # sizes are given for the real 1024-pixel images
    if kind == "inverted":
        out = 1.0 - image
    elif kind == "low_dose":
        out = _low_dose(image, rng, px)
    elif kind == "collimated":
        out = _collimated(image, rng, px)
    else:
        out = image
    return np.clip(out, 0, 1).astype(np.float32)


def lung_visible_fraction(subject: SyntheticSubject) -> float:
    """Share of the lung area inside the image (1.0 unless the field of view cuts the lungs)."""
    masks = organ_masks(subject, subject.shape)
    inside = total = 0.0
    for organ, key in (("right lung", "right_lung"), ("left lung", "left_lung")):
        x, y = subject.placement(subject.anatomy.polygons[key]).T
        total += 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))  # shoelace
        inside += float(masks[organ].sum())
    return float(min(1.0, inside / max(total, 1.0)))


# ---------------------------------------------------------------- one image


@dataclasses.dataclass(frozen=True)
class PlannedImage:
    patient: int
    follow_up: int
    degradation: str

    @property
    def name(self) -> str:
        return image_name(self.patient, self.follow_up)


@dataclasses.dataclass(frozen=True)
class Patient:
    """One phantom subject, and the years that pass between two of their radiographs."""

    subject: SyntheticSubject
    years_per_visit: float

    @staticmethod
    def sample(patient: int, seed: int, size: int, enlarged_fraction: float = 0.0) -> "Patient":
        """``enlarged_fraction`` of patients get a cardiothoracic ratio in 0.52..0.62 (cardiomegaly)."""
        stem = f"{patient:08d}"
        heart_rng = subject_rng(seed + 3, stem)
        ctr = float(heart_rng.uniform(0.52, 0.62)) if heart_rng.random() < enlarged_fraction else None
        subject = sample_subject(DATASET, stem, False, seed, (size, size), ctr_target=ctr)
        return Patient(subject, float(subject_rng(seed + 2, stem).uniform(0.0, 1.5)))


def render_planned(plan: PlannedImage, patient: Patient, seed: int) -> tuple[np.ndarray, dict, dict]:
    """uint8 pixels, the real row's copied fields and the truth row of one image."""
    rng = subject_rng(seed, plan.name)
    base = patient.subject
    pose = _degraded_pose(Pose.sample(rng, base.shape), plan.degradation, base.shape, rng)
    placement = Placement(base.shape, LOOKS[DATASET], base.placement.deformation, pose)
    exposure = sample_exposure(rng, **PORTABLE_EXPOSURE)
    subject = dataclasses.replace(base, name=plan.name[:-4], placement=placement, exposure=exposure)
    ctr = base.ctr
    real = _real_row(rng, ctr > CARDIOMEGALY_CTR)
    image = degrade_image(render_image(subject), plan.degradation, rng)
    truth = {
        "name": plan.name[:-4],
        "image_index": plan.name,
        "patient_id": plan.patient,
        "follow_up": plan.follow_up,
        "sex": base.sex,
        "age": min(95, base.age + int(plan.follow_up * patient.years_per_visit)),
        "finding_labels": real["Finding Labels"],
        "ctr": round(ctr, 4),
        "cardiomegaly": ctr > CARDIOMEGALY_CTR,
        "quality": GOOD if plan.degradation == NO_DEGRADATION else POOR,
        "degradation": plan.degradation,
        "rotation_deg": round(pose.rotation_deg, 3),
        "scale": round(pose.scale, 4),
        "shift_row_px": round(pose.shift_row, 2),
        "shift_col_px": round(pose.shift_col, 2),
        "lung_visible_fraction": round(lung_visible_fraction(subject), 4),
    }
    return np.rint(image * 255).astype(np.uint8), real, truth


# ---------------------------------------------------------------- dataset


def _table_row(real: dict, truth: dict) -> list[str]:
    width, height, spacing_x, spacing_y = (real[c] for c in _ORIGINAL_COLUMNS)
    return [
        truth["image_index"],
        truth["finding_labels"],
        str(truth["follow_up"]),
        str(truth["patient_id"]),
        str(truth["age"]),
        truth["sex"],
        real["View Position"],
        str(int(width)),
        str(int(height)),
        format(float(spacing_x), ".6g"),
        format(float(spacing_y), ".6g"),
    ]


def write_label_table(path: str | Path, rows: list[list[str]]) -> None:
    """``Data_Entry_2017.csv`` in the real format: header verbatim, 11 fields, ``\\n`` line ends."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(cxr14.HEADER)
        writer.writerows(rows)


def _check_settings(n_images: int, poor_fraction: float, image_size: int, enlarged_fraction: float) -> None:
    if int(n_images) != n_images or n_images < 1:
        raise ConfigError(f"n_images must be a whole number >= 1, got {n_images}")
    for name, value in (("poor_fraction", poor_fraction), ("enlarged_fraction", enlarged_fraction)):
        if not 0.0 <= float(value) <= 1.0:
            raise ConfigError(f"{name} must lie in 0..1, got {value}")
    if int(image_size) != image_size or image_size < MIN_IMAGE_SIZE:
        raise ConfigError(f"image_size must be a whole number of pixels >= {MIN_IMAGE_SIZE}, got {image_size}")


def generate_cxr14(
    raw_root: str | Path, n_images: int, seed: int, poor_fraction: float = 0.2, image_size: int = 1024,
    enlarged_fraction: float = 0.0,
) -> pd.DataFrame:
    """Write ``n_images`` synthetic ChestX-ray14 images and tables under ``raw_root``; returns the truth table.

    ``enlarged_fraction`` of the patients get an enlarged heart on top of the
    phantom's natural spread of cardiothoracic ratios (about 13% above 0.5),
    so that a small stand-in still holds enough cardiomegaly cases for a
    20-fold cross-validation (the real prevalence is 2.5%).

    The directory is replaced atomically, and only if the generator wrote it
    (a user's real copy is never overwritten).
    """
    _check_settings(n_images, poor_fraction, image_size, enlarged_fraction)
    raw_root = Path(raw_root)
    _refuse_to_replace_real_data(raw_root)
    kinds = degradation_plan(int(n_images), poor_fraction, seed)
    plans = [PlannedImage(p, f, k) for (p, f), k in zip(plan_images(int(n_images), seed), kinds)]
    truth_rows, table_rows = [], []
    patient = None
    with atomic_dir(raw_root) as tmp:
        for plan in plans:
            if plan.follow_up == 0:  # a patient's images are consecutive
                patient = Patient.sample(plan.patient, seed, int(image_size), enlarged_fraction)
            pixels, real, truth = render_planned(plan, patient, seed)
            write_grey_png(tmp / cxr14.IMAGES_DIR / plan.name, pixels)
            table_rows.append(_table_row(real, truth))
            truth_rows.append(truth)
        write_label_table(tmp / cxr14.LABEL_TABLE, table_rows)
        truth_table = pd.DataFrame(truth_rows)
        write_csv(tmp / TRUTH_FILE, truth_table)
        write_manifest(tmp, tmp / MANIFEST_FILE)
    n_poor = int((truth_table["quality"] == POOR).sum())
    log.info("wrote %d synthetic %s images (%d poor) to %s", len(truth_table), DATASET, n_poor, raw_root)
    return truth_table
