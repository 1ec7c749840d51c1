"""The cxr14 study's bad inputs: its config section, and ChestX-ray14's label table and images.

Run by tests/workflow/test_bad_inputs.py with the cases of every other study (tests/support/bad_inputs.py says how).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from support.bad_inputs import LISTING_CHARS, Stock, StepRun, config_case, delete, edit_text, step_case

LABEL_TABLE = "Data_Entry_2017.csv"


def make_stock(raw: Path) -> None:
    """A small stand-in of ChestX-ray14 in ``raw/ChestX-ray14``."""
    from medrepro.studies.chest.cxr14.synthetic import generate_cxr14

    generate_cxr14(raw / "ChestX-ray14", n_images=4, seed=0, image_size=64)


def cxr14_manifest(damage: Callable[[Path], None], n_images: int = 4) -> Callable:
    def prepare(case: Path, stock: Stock) -> StepRun:
        raw = stock.copy_raw("ChestX-ray14", case)
        damage(raw)
        return StepRun("cxr14_manifest", "medrepro.studies.chest.cxr14.steps:manifest",
                       {"manifest": str(case / "results" / "cxr14" / "manifest.csv")},
                       {"raw_dir": str(raw), "n_images": n_images, "shard_size": 2})

    return prepare


def _label_table(edit: Callable[[str], str]) -> Callable[[Path], None]:
    return edit_text(LABEL_TABLE, edit)


CASES: list = [  # BadInput, or pytest.param(BadInput, marks=xfail) for a known library problem
    config_case("cxr14_verify_without_raw_dir", "cxr14: {source: verify}\n", "cxr14.raw_dir = null", "set raw_dir"),
    config_case("cxr14_download", "cxr14: {source: download}\n", "cxr14.source = 'download'",
                "must be one of synthetic, verify"),
    step_case("cxr14_label_table_without_a_column",
              cxr14_manifest(_label_table(lambda t: t.replace("Patient ID", "Patient", 1))),
              f"{LABEL_TABLE}: missing columns Patient ID", max_chars=LISTING_CHARS,
              absent=("results/cxr14/manifest.csv",)),
    step_case("cxr14_unknown_finding",
              cxr14_manifest(_label_table(lambda t: re.sub(r"(\.png,)[^,]+", r"\1Cardiomegally", t, count=1))),
              LABEL_TABLE, "Cardiomegally", max_chars=LISTING_CHARS, absent=("results/cxr14/manifest.csv",)),
    step_case("cxr14_fewer_images_than_n_images", cxr14_manifest(lambda raw: None, n_images=10),
              f"{LABEL_TABLE}: lists 4 images", "cxr14.n_images = 10", absent=("results/cxr14/manifest.csv",)),
    step_case("cxr14_missing_image", cxr14_manifest(delete("images/00000002_000.png")),
              "00000002_000.png", absent=("results/cxr14/manifest.csv",)),
]
