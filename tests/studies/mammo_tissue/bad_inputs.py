"""The tissue classifier study's bad inputs: the DDSM's .ics headers, lossless JPEG images, .OVERLAY annotations
and case folders. Run by tests/workflow/test_bad_inputs.py with every other study's cases."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from support.bad_inputs import MAX_MESSAGE_CHARS, Stock, StepRun, step_case

DDSM = "DDSM"
TISSUE_OUT = "results/mammo_tissue/base"
BASE_FILES = tuple(f"{TISSUE_OUT}/{name}" for name in ("views.csv", "annotations.csv", "images.npz"))
PARAMS = {"crop": 96, "constants": "calibration", "clip": [0.05, 3.6]}
# A message names a file under the case's folder: case folder, volume and file name (about 80 characters).
PATH_CHARS = 120


def make_stock(raw: Path) -> None:
    """A small synthetic DDSM in ``raw/DDSM``: one normal case and two cancers."""
    from medrepro.studies.mammo_tissue.synthetic import generate_ddsm

    generate_ddsm(raw / DDSM, n_cases=3, seed=0, pixel_mm=0.5,
                  case_mix={"normals": 1, "benigns": 0, "benign_without_callbacks": 0, "cancers": 2})


def tissue_prepare(damage: Callable[[Path], None]) -> Callable:
    """The prepare step (case folders -> base images) on a damaged copy of the stand-in."""

    def prepare(case: Path, stock: Stock) -> StepRun:
        raw = stock.copy_raw(DDSM, case)
        damage(raw)
        out = case / TISSUE_OUT
        return StepRun("mammo_tissue_prepare", "medrepro.studies.mammo_tissue.steps:prepare",
                       {"views": str(out / "views.csv"), "annotations": str(out / "annotations.csv"),
                        "images": str(out / "images.npz")}, {"raw_dir": str(raw), **PARAMS})

    return prepare


def _cancer(raw: Path) -> Path:
    return sorted((raw / "cases" / "cancers").glob("*/case*"))[0]


def _ics(raw: Path) -> Path:
    return next(_cancer(raw).glob("*.ics"))


def _edit_ics(edit: Callable[[str], str]) -> Callable[[Path], None]:
    def damage(raw: Path) -> None:
        path = _ics(raw)
        text = path.read_text()
        changed = edit(text)
        assert changed != text  # the stand-in changed: adapt the edit
        path.write_text(changed)

    return damage


def _view_line(text: str, view: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(view))


def _drop_pixels_per_line(text: str) -> str:
    line = _view_line(text, "LEFT_CC")
    return text.replace(line, " ".join(t for i, t in enumerate(line.split()) if t != "PIXELS_PER_LINE"
                                       and line.split()[i - 1] != "PIXELS_PER_LINE"))


def _wrong_size(text: str) -> str:
    line = _view_line(text, "RIGHT_MLO")
    tokens = line.split()
    tokens[tokens.index("LINES") + 1] = str(int(tokens[tokens.index("LINES") + 1]) + 7)
    return text.replace(line, " ".join(tokens))


def _image(raw: Path, view: str) -> Path:
    return next(_cancer(raw).glob(f"*.{view}.LJPEG"))


def _truncate_image(raw: Path) -> None:
    path = _image(raw, "LEFT_MLO")
    path.write_bytes(path.read_bytes()[:300])


def _out_of_range(raw: Path) -> None:
    from medrepro.studies.mammo_tissue.readers.ljpeg import read_ljpeg, write_ljpeg
    from medrepro.studies.mammo_tissue.readers import ddsm

    path = _image(raw, "RIGHT_CC")
    header = ddsm.parse_ics(_ics(raw)).views["RIGHT_CC"]
    image = read_ljpeg(path, header.rows, header.cols, header.bits).astype(np.uint16)
    image[5, 5] = 2 ** header.bits + 500  # beyond the digitiser's bit depth
    write_ljpeg(path, image, 16)


def _overlay(raw: Path) -> Path:
    return sorted(_cancer(raw).glob("*.OVERLAY"))[0]


def _edit_overlay(edit: Callable[[list[str]], list[str]]) -> Callable[[Path], None]:
    def damage(raw: Path) -> None:
        path = _overlay(raw)
        lines = path.read_text().splitlines()
        path.write_text("\n".join(edit(lines)) + "\n")

    return damage


def _chain_line(lines: list[str]) -> int:
    return lines.index("BOUNDARY") + 1


def _broken_chain(lines: list[str]) -> list[str]:
    i = _chain_line(lines)
    tokens = lines[i].split()
    tokens[3] = "9"
    lines[i] = " ".join(tokens)
    return lines


def _outline_outside(lines: list[str]) -> list[str]:
    i = _chain_line(lines)
    tokens = lines[i].split()
    tokens[0], tokens[1] = "99999", "99999"
    lines[i] = " ".join(tokens)
    return lines


def _without_ics(raw: Path) -> None:
    _ics(raw).unlink()


CASES: list = [
    step_case("tissue_ics_without_a_view_size", tissue_prepare(_edit_ics(_drop_pixels_per_line)), ".ics",
              "view LEFT_CC lacks PIXELS_PER_LINE", max_chars=MAX_MESSAGE_CHARS + PATH_CHARS, absent=BASE_FILES),
    step_case("tissue_ics_size_matching_no_image", tissue_prepare(_edit_ics(_wrong_size)), "RIGHT_MLO.LJPEG",
              "the case's .ics gives", "nor is it the transpose", max_chars=MAX_MESSAGE_CHARS + PATH_CHARS,
              absent=BASE_FILES),
    step_case("tissue_unknown_digitiser",
              tissue_prepare(_edit_ics(lambda t: "\n".join("DIGITIZER KODAK 99" if line.startswith("DIGITIZER")
                                                            else line for line in t.splitlines()) + "\n")),
              ".ics", "unknown digitiser 'KODAK 99'", max_chars=MAX_MESSAGE_CHARS + PATH_CHARS, absent=BASE_FILES),
    step_case("tissue_truncated_ljpeg", tissue_prepare(_truncate_image), "LEFT_MLO.LJPEG",
              "not a readable lossless JPEG", max_chars=MAX_MESSAGE_CHARS + PATH_CHARS, absent=BASE_FILES),
    step_case("tissue_ljpeg_beyond_its_bit_depth", tissue_prepare(_out_of_range), "RIGHT_CC.LJPEG",
              "beyond the 12-bit range", max_chars=MAX_MESSAGE_CHARS + PATH_CHARS, absent=BASE_FILES),
    step_case("tissue_overlay_broken_chain_code", tissue_prepare(_edit_overlay(_broken_chain)), ".OVERLAY",
              "direction outside 0-7", max_chars=MAX_MESSAGE_CHARS + PATH_CHARS, absent=BASE_FILES),
    step_case("tissue_overlay_outline_outside_the_image", tissue_prepare(_edit_overlay(_outline_outside)),
              ".OVERLAY", "wholly outside", max_chars=MAX_MESSAGE_CHARS + PATH_CHARS, absent=BASE_FILES),
    step_case("tissue_case_folder_without_ics", tissue_prepare(_without_ics), "holds one .ics header",
              max_chars=MAX_MESSAGE_CHARS + PATH_CHARS, absent=BASE_FILES),
]
