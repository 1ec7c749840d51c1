"""The chest study's bad inputs: its config section, and JSRT's, Montgomery's and Shenzhen's files.

Run by tests/workflow/test_bad_inputs.py with the cases of every other study (tests/support/bad_inputs.py says how).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from support.bad_inputs import (DIGESTS_CHARS, INSTRUCTIONS_CHARS, LISTING_CHARS, PNG_SIGNATURE, Stock, StepRun,
                                config_case, delete, flip_a_byte, nothing_obtained, overwrite, step_case, truncate)

SCR_HEART = "scr/scratch/fold1/masks/heart"
MC_IMAGES, MC_MASKS, MC_READINGS = (f"MontgomerySet/{f}" for f in ("CXR_png", "ManualMask", "ClinicalReadings"))


def make_stock(raw: Path) -> None:
    """Small stand-ins of JSRT (with SCR), Montgomery and Shenzhen in ``raw/<dataset>``."""
    from medrepro.studies.chest.synthetic import generate_dataset

    generate_dataset("JSRT", raw / "JSRT", n_subjects=2, seed=0)
    generate_dataset("Montgomery", raw / "Montgomery", n_subjects=3, seed=0, image_size=(128, 104))
    generate_dataset("Shenzhen", raw / "Shenzhen", n_subjects=3, seed=0, image_size=(128, 128))


# ---------------------------------------------------------------- the steps run on a damaged copy


def obtain(dataset: str, source: str, damage: Callable[[Path], None] | None = None) -> Callable:
    """The obtain step (layout and checksums) on a copy of ``dataset``, damaged by ``damage``."""

    def prepare(case: Path, stock: Stock) -> StepRun:
        raw = stock.copy_raw(dataset, case, user_copy=source != "synthetic")
        if damage:
            damage(raw)
        return StepRun("chest_obtain", "medrepro.studies.chest.steps:obtain",
                       {"manifest": str(case / "results" / dataset / "raw_manifest.sha256")},
                       {"dataset": dataset, "source": source, "raw_dir": str(raw)})

    return prepare


def convert(dataset: str, damage: Callable[[Path], None], spacing_mm=None) -> Callable:
    def prepare(case: Path, stock: Stock) -> StepRun:
        raw = stock.copy_raw(dataset, case)
        damage(raw)
        return StepRun("chest_convert", "medrepro.studies.chest.steps:convert",
                       {"converted": str(case / "results" / dataset / "converted")},
                       {"dataset": dataset, "raw_dir": str(raw), "spacing_mm": spacing_mm}, {"raw": [str(raw)]})

    return prepare


def split(arrays: Callable[[Path], Path], lists: dict[str, str] | None = None) -> Callable:
    """The split step on the prealigned arrays ``arrays`` writes, with the authors' lists when given."""

    def prepare(case: Path, stock: Stock) -> StepRun:
        lists_dir = None
        if lists is not None:
            lists_dir = case / "lists"
            lists_dir.mkdir()
            for name, text in lists.items():
                (lists_dir / name).write_text(text)
        return StepRun("chest_split", "medrepro.studies.chest.steps:split",
                       {"split": str(case / "results" / "JSRT" / "split.json")},
                       {"dataset": "JSRT", "seed": 0, "fractions": [0.5, 0.25, 0.25],
                        "lists_dir": None if lists_dir is None else str(lists_dir), "test_pairs_factor": 2},
                       {"arrays": str(arrays(case))})

    return prepare


def pinned_then_changed(dataset: str, relative: str) -> Callable:
    """A user's copy pinned on first use (as the obtain step does), then one of its files edited."""

    def prepare(case: Path, stock: Stock) -> StepRun:
        from medrepro.provenance import pinning

        run = obtain(dataset, "verify")(case, stock)
        raw = Path(run.params["raw_dir"])
        pin = pinning.pin_path(dataset, raw, "verify", pinning.pins_dir(case / "results" / "provenance"))
        pinning.pin_first_use(dataset, raw, pin)
        flip_a_byte(relative)(raw)
        return run

    return prepare


def autoencoder_with_corrupt_checkpoints(case: Path, stock: Stock) -> StepRun:
    """The autoencoder's training step with both its checkpoints damaged (the latest and the previous one)."""
    from medrepro.data.atomic import write_json
    from medrepro.studies.chest.prealigned import save_prealigned

    names = [f"JPCLN00{k}" for k in range(1, 5)]
    labels = np.zeros((4, 32, 32), np.uint8)
    labels[:, 8:24, 4:14], labels[:, 8:24, 18:28], labels[:, 20:28, 12:20] = 1, 2, 3
    arrays = case / "results" / "JSRT" / "prealigned.npz"
    save_prealigned(arrays, np.zeros((4, 32, 32), np.float32), labels, names, np.full((4, 2), 0.35), names[0])
    split_file = case / "results" / "JSRT" / "split.json"
    write_json(split_file, {"train": names[:2], "val": names[2:3], "test": names[3:], "test_pairs": [], "seed": 0})
    checkpoint = case / "results" / "JSRT" / "checkpoints" / "autoencoder.ckpt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"PK\x03\x04 not a checkpoint")
    Path(f"{checkpoint}.prev").write_bytes(b"")
    models = case / "results" / "JSRT" / "models"
    return StepRun("chest_train_autoencoder", "medrepro.studies.chest.steps:train_autoencoder",
                   {"model": str(models / "autoencoder.pt"), "losses": str(models / "autoencoder.losses.csv")},
                   {"seed": 0, "training": {"steps": 4, "batch_size": 2, "learning_rate": 1e-3, "noise_p": 0.1,
                                            "augmented_masks": 0, "checkpoint_every": 2},
                    "checkpoint": str(checkpoint)},
                   {"arrays": str(arrays), "split": str(split_file)}, {"dataset": "JSRT", "seed": "0"})


# ---- damage and damaged intermediate files


def _mask_of_size(relative: str, shape: tuple[int, int]) -> Callable[[Path], None]:
    def damage(raw: Path) -> None:
        Image.fromarray(np.zeros(shape, np.uint8)).save(raw / relative)

    return damage


def _prealigned(case: Path) -> Path:
    """A valid prealigned set of four subjects (JPCLN001..JPCLN004)."""
    from medrepro.studies.chest.prealigned import save_prealigned

    path = case / "results" / "JSRT" / "prealigned.npz"
    names = [f"JPCLN00{k}" for k in range(1, 5)]
    save_prealigned(path, np.zeros((4, 8, 8), np.float32), np.zeros((4, 8, 8), np.uint8), names,
                    np.full((4, 2), 0.35), names[0])
    return path


def _truncated_prealigned(case: Path) -> Path:
    path = _prealigned(case)
    path.write_bytes(path.read_bytes()[:50])
    return path


# ---------------------------------------------------------------- the cases

CASES: list = [  # BadInput, or pytest.param(BadInput, marks=xfail) for a known library problem
    # ---- the config check's kinds of mistake, on chest's section
    config_case("nested_unknown_key", "chest: {registration: {stepz: 3}}\n", "unknown key chest.registration.stepz",
                "allowed keys under chest.registration: methods, steps", "did you mean steps?"),
    config_case("wrong_type", "chest: {registration: {steps: many}}\n", "chest.registration.steps = 'many'",
                "must be a whole number >= 1"),
    config_case("section_not_a_mapping", "chest: {registration: 5}\n", "chest.registration = 5",
                "must be a mapping"),
    config_case("out_of_range", "chest: {autoencoder: {noise_p: 1.5}}\n", "chest.autoencoder.noise_p = 1.5",
                "<= 1"),
    config_case("not_a_multiple_of_8", "chest: {prealign: {image_size: 60}}\n", "chest.prealign.image_size = 60",
                "a multiple of 8"),
    config_case("unknown_method", "chest: {registration: {methods: [RegNet, FooNet]}}\n",
                "chest.registration.methods[1] = 'FooNet'", "one of RegNet, CE-RegNet, AE-RegNet, AC-RegNet"),
    config_case("exclusive_bound", "chest: {registration: {ce_epsilon: 0.5}}\n",
                "chest.registration.ce_epsilon = 0.5", "< 0.5"),
    # ---- its config section
    config_case("jsrt_download", "chest: {datasets: {JSRT: {source: download}}}\n",
                "chest.datasets.JSRT.source = 'download'", "must be one of synthetic, verify", "db.jsrt.or.jp",
                "source: verify", max_chars=500),
    config_case("jsrt_verify_without_raw_dir", "chest: {datasets: {JSRT: {source: verify}}}\n",
                "chest.datasets.JSRT.raw_dir = null", "set raw_dir", end_to_end=True),
    config_case("montgomery_verify_without_raw_dir", "chest: {datasets: {Montgomery: {source: verify}}}\n",
                "chest.datasets.Montgomery.raw_dir = null", "set raw_dir"),
    config_case("fractions_not_summing_to_1", "chest: {split: {fractions: [0.5, 0.3, 0.3]}}\n",
                "chest.split.fractions = [0.5, 0.3, 0.3]", "summing to 1 (sums to 1.1, not 1)", end_to_end=True),
    config_case("fractions_of_two_folds", "chest: {split: {fractions: [0.5, 0.5]}}\n",
                "chest.split.fractions = [0.5, 0.5]", "exactly 3 items"),
    config_case("jsrt_spacing_given", "chest: {datasets: {JSRT: {spacing_mm: 0.2}}}\n",
                "chest.datasets.JSRT.spacing_mm = 0.2", "leave it null"),
    config_case("negative_spacing", "chest: {datasets: {Montgomery: {spacing_mm: -1}}}\n",
                "chest.datasets.Montgomery.spacing_mm = -1", "null or a number > 0"),
    # ---- its data
    step_case("jsrt_truncated_image", obtain("JSRT", "verify", truncate("images/JPCLN001.IMG")),
              "JPCLN001.IMG (100 bytes)", "must be exactly", "db.jsrt.or.jp",
              max_chars=INSTRUCTIONS_CHARS, absent=nothing_obtained("JSRT")),
    step_case("jsrt_missing_scr_mask", obtain("JSRT", "verify", delete(f"{SCR_HEART}/JPCNN001.gif")),
              "scr: SCR masks missing", "JPCNN001 (heart", "isi.uu.nl", max_chars=INSTRUCTIONS_CHARS,
              absent=nothing_obtained("JSRT")),
    step_case("verify_without_the_data", obtain("JSRT", "verify", delete(".")),
              "{case}/raw/JSRT/images: no JSRT images", "db.jsrt.or.jp", max_chars=INSTRUCTIONS_CHARS,
              absent=nothing_obtained("JSRT")),
    step_case("checksum_mismatch", obtain("Montgomery", "synthetic", flip_a_byte(f"{MC_IMAGES}/MCUCXR_0002_0.png")),
              "MCUCXR_0002_0.png", "sha256", max_chars=DIGESTS_CHARS,
              absent=("results/Montgomery/raw_manifest.sha256",)),
    step_case("montgomery_missing_mask",
              obtain("Montgomery", "verify", delete(f"{MC_MASKS}/rightMask/MCUCXR_0001_0.png")),
              "ManualMask: lung masks missing", "MCUCXR_0001_0 (rightMask)", max_chars=INSTRUCTIONS_CHARS,
              absent=nothing_obtained("Montgomery")),
    step_case("shenzhen_without_masks", obtain("Shenzhen", "verify", delete("shcxr-lung-mask")),
              "shcxr-lung-mask/mask: no lung masks", "kaggle", max_chars=INSTRUCTIONS_CHARS,
              absent=nothing_obtained("Shenzhen")),
    step_case("mask_of_the_wrong_size",
              convert("Montgomery", _mask_of_size(f"{MC_MASKS}/leftMask/MCUCXR_0001_0.png", (50, 60)), 0.35),
              "leftMask/MCUCXR_0001_0.png", "mask is 60 x 50 (w x h), image is 104 x 128 (w x h)",
              absent=("results/Montgomery/converted",)),
    step_case("unreadable_png",
              convert("Montgomery", overwrite(f"{MC_IMAGES}/MCUCXR_0002_0.png", PNG_SIGNATURE + b"\0" * 40), 0.35),
              "CXR_png/MCUCXR_0002_0.png", "cannot read PNG", absent=("results/Montgomery/converted",)),
    step_case("damaged_intermediate_file", split(_truncated_prealigned), "JSRT/prealigned.npz",
              "cannot read as an npz archive", absent=("results/JSRT/split.json",)),
    step_case("split_list_missing", split(_prealigned, {"JSRT_test.txt": "JPCLN001.IMG\n"}),
              "lists/JSRT_train.txt: split list not found", absent=("results/JSRT/split.json",)),
    step_case("split_list_unknown_images",
              split(_prealigned, {"JSRT_train.txt": "JPCLN001.IMG\nJPCLN002.IMG\nJPCNN099.IMG\n",
                                  "JSRT_test.txt": "JPCLN003.IMG\nJPCLN004.IMG\n"}),
              "lists/JSRT_train.txt: 1 listed images are not in the converted dataset", "JPCNN099",
              absent=("results/JSRT/split.json",)),
    # Not an error, but never silent: each empty reading is named, and the log counts them.
    step_case("empty_montgomery_reading",
              convert("Montgomery", overwrite(f"{MC_READINGS}/MCUCXR_0001_0.txt", b""), 0.35),
              "ClinicalReadings/MCUCXR_0001_0.txt: clinical reading is empty", "sex and age left empty",
              exit_code=0, level="WARNING"),
    step_case("user_copy_changed_after_pinning", pinned_then_changed("Montgomery", f"{MC_IMAGES}/MCUCXR_0002_0.png"),
              "MCUCXR_0002_0.png", "sha256", "medrepro data repin", max_chars=DIGESTS_CHARS,
              absent=("results/Montgomery/raw_manifest.sha256",)),
    step_case("both_training_checkpoints_corrupt", autoencoder_with_corrupt_checkpoints,
              "autoencoder.ckpt", "autoencoder.ckpt.prev", "delete", max_chars=LISTING_CHARS,
              absent=("results/JSRT/models/autoencoder.pt", "results/JSRT/models/autoencoder.losses.csv")),
]
