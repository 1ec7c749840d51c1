"""The microcalcification study's bad inputs: INbreast's DICOMs and XML plists, a folder of images with masks, the
patch database and the patch size. Run by tests/workflow/test_bad_inputs.py with every other study's cases."""

from __future__ import annotations

import plistlib
import shutil
import sqlite3
from pathlib import Path
from typing import Callable

import numpy as np

from support.bad_inputs import MAX_MESSAGE_CHARS, Stock, StepRun, config_case, step_case

INBREAST = "INbreast"
MASKS = "calcification_masks"
DATABASE = "results/microcalc/patches.sqlite"
MODEL_FILES = tuple(f"results/microcalc/models/seed0/detector_same.{suffix}" for suffix in ("pt", "losses.csv"))
# A message names a file below the case's folder: raw/INbreast/AllDICOMs/<INbreast's long DICOM name>.
PATH_CHARS = 200
DATASET = {"format": "inbreast", "point_radius_px": 2, "native_pixel_mm": None}
PATCHES = {"patch_size": 49, "labelling": {"metric": "chebyshev", "band": [1, 3]},
           "sampling": {"positive_cap": 5, "background_stride": 24, "background_cap": 5},
           "held_out": {"val": 8, "test": 8}, "mix": {"C1": 3, "C2": 1, "C3": 1, "C4": 1}}


def make_stock(raw: Path) -> None:
    """A small synthetic INbreast in ``raw/INbreast`` (every image with calcifications) and three of its images as
    a folder of PNGs with masks in ``raw/calcification_masks``."""
    from medrepro.data.io.png import write_grey_png, write_mask_png
    from medrepro.studies.microcalc.readers import inbreast, masks_dir
    from medrepro.studies.microcalc.synthetic import generate_inbreast

    generate_inbreast(raw / INBREAST, n_images=4, seed=0, image_size=(220, 200), normal_fraction=0.0)
    folder = raw / MASKS
    folder.mkdir()
    rows = []
    for record in list(inbreast.read_inbreast(raw / INBREAST))[:3]:
        write_grey_png(folder / f"{record.name}.png", (record.image >> 8).astype(np.uint8))
        write_mask_png(folder / f"{record.name}{masks_dir.MASK_SUFFIX}", record.mask)
        rows.append((f"{record.name}.png", record.spacing_mm[0], record.acquisition))
    masks_dir.write_table(folder / masks_dir.TABLE_FILE, rows)


def extract(dataset: str, damage: Callable[[Path], None], fmt: str = "inbreast") -> Callable:
    """The extraction step (raw files -> patch database) on a damaged copy of a stand-in."""

    def prepare(case: Path, stock: Stock) -> StepRun:
        raw = stock.copy_raw(dataset, case)
        damage(raw)
        return StepRun("microcalc_extract", "medrepro.studies.microcalc.steps:extract",
                       {"database": str(case / DATABASE)},
                       {"raw_dir": str(raw), "dataset": {**DATASET, "format": fmt}, "pixel_mm": 0.1,
                        "split": {"train": 231, "val": 25, "test": 27}, "patches": PATCHES, "seed": 0})

    return prepare


def _dicom(raw: Path) -> Path:
    return sorted((raw / "AllDICOMs").glob("*.dcm"))[0]


def _xml(raw: Path) -> Path:
    return sorted((raw / "AllXML").glob("*.xml"))[0]


def _truncate_dicom(raw: Path) -> None:
    path = _dicom(raw)
    path.write_bytes(path.read_bytes()[:-500])


def _constant_dicom(raw: Path) -> None:
    """An image whose pixels are all one grey level: Otsu's threshold finds no breast."""
    import pydicom

    path = _dicom(raw)
    dataset = pydicom.dcmread(path)
    pixels = dataset.pixel_array
    dataset.PixelData = np.full_like(pixels, 300).tobytes()
    dataset.save_as(path)


def _edit_rois(edit: Callable[[list], None]) -> Callable[[Path], None]:
    def damage(raw: Path) -> None:
        path = _xml(raw)
        plist = plistlib.loads(path.read_bytes())
        edit(plist["Images"][0]["ROIs"])
        path.write_bytes(plistlib.dumps(plist))

    return damage


def _calcification(rois: list) -> dict:
    return next(roi for roi in rois if roi["Name"] == "Calcification")


def _no_points(rois: list) -> None:
    roi = _calcification(rois)
    roi["Point_px"], roi["NumberOfPoints"] = [], 0


def _point_outside(rois: list) -> None:
    _calcification(rois)["Point_px"] = ["(5000.0, 5000.0)"]


def _broken_plist(raw: Path) -> None:
    path = _xml(raw)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _mask_of_another_size(raw: Path) -> None:
    from medrepro.data.io.png import write_mask_png

    mask = sorted(raw.glob("*_mask.png"))[0]
    write_mask_png(mask, np.zeros((17, 23), dtype=bool))


def _incomplete_database(case: Path, stock: Stock) -> StepRun:
    """A database whose extraction was killed after the rows went in: its completion marker is missing."""
    from medrepro.studies.microcalc.patchdb import ExtractionSettings, build_patch_database
    from medrepro.studies.microcalc.mammograms import Source, image_names, read_mammograms
    from medrepro.studies.microcalc.patches import split_images

    raw = stock.copy_raw(INBREAST, case)
    database = case / DATABASE
    source = Source(pixel_mm=0.1)
    build_patch_database(database, read_mammograms(raw, source), split_images(image_names(raw, source), 0),
                         ExtractionSettings.from_section({**PATCHES, "seed": 0}))
    connection = sqlite3.connect(database)
    with connection:
        connection.execute("DELETE FROM meta WHERE key = 'complete'")
    connection.close()
    shutil.rmtree(raw)
    out = case / "results/microcalc/models/seed0"
    training = {"steps": 2, "batch_size": 4, "learning_rate": 1e-3, "steps_per_epoch": 1, "val_every": 1,
                "log_every": 1, "checkpoint_every": 1, "plateau_patience": 5, "plateau_factor": 0.5,
                "early_stopping_patience": 15}
    return StepRun("microcalc_train", "medrepro.studies.microcalc.steps:train",
                   {"model": str(out / "detector_same.pt"), "losses": str(out / "detector_same.losses.csv")},
                   {"network": "detector", "convolution": "same", "seed": 0, "widths": [4] * 6, "hidden": 8,
                    "dropout": 0.5, "augment": True, "training": training,
                    "checkpoint": str(case / "results/microcalc/checkpoints/seed0/detector_same.ckpt")},
                   input={"database": str(database)})


NO_DATABASE = (DATABASE,)
CASES: list = [
    step_case("microcalc_truncated_dicom", extract(INBREAST, _truncate_dicom), ".dcm", "truncated",
              max_chars=MAX_MESSAGE_CHARS + PATH_CHARS, absent=NO_DATABASE),
    step_case("microcalc_plist_that_does_not_parse", extract(INBREAST, _broken_plist), ".xml",
              "not a valid XML property list", max_chars=MAX_MESSAGE_CHARS + PATH_CHARS, absent=NO_DATABASE),
    step_case("microcalc_roi_without_points", extract(INBREAST, _edit_rois(_no_points)), ".xml", "has no points",
              max_chars=MAX_MESSAGE_CHARS + PATH_CHARS, absent=NO_DATABASE),
    step_case("microcalc_point_outside_the_image", extract(INBREAST, _edit_rois(_point_outside)), ".xml",
              "lies outside the image", max_chars=MAX_MESSAGE_CHARS + PATH_CHARS, absent=NO_DATABASE),
    step_case("microcalc_image_without_breast", extract(INBREAST, _constant_dicom), ".dcm", "no breast found",
              max_chars=MAX_MESSAGE_CHARS + PATH_CHARS, absent=NO_DATABASE),
    step_case("microcalc_mask_of_another_size", extract(MASKS, _mask_of_another_size, "masks_dir"), "_mask.png",
              "size mismatch: mask is 23 x 17", max_chars=MAX_MESSAGE_CHARS + PATH_CHARS, absent=NO_DATABASE),
    step_case("microcalc_half_written_database", _incomplete_database, "patches.sqlite", "incomplete",
              "rerun the patch extraction", max_chars=MAX_MESSAGE_CHARS + PATH_CHARS, absent=MODEL_FILES),
    config_case("microcalc_even_patch_size", "microcalc:\n  patches:\n    patch_size: 48\n",
                "microcalc.patches.patch_size", "odd"),
    config_case("microcalc_patch_too_small_for_valid", "microcalc:\n  patches:\n    patch_size: 29\n",
                "microcalc.patches.patch_size", ">= 43", "drop valid"),
]
