"""Bad inputs of every study: each mistake gives one short message naming the file or key, and leaves nothing behind.

Every kind of mistake is a :class:`BadInput` in ``CASES``: its name, how it is set up and run, the exit code
expected, the strings its message must contain (the file or config key, and what to do), and the paths that must
not exist afterwards. Three ways to run one:

* ``config_case``: a config file merged over config/config.yaml, planned with ``snakemake -n`` (the workflow
  stops while it reads the config, before any job);
* ``step_case``: one rule's step, run the way ``scripts/step.py`` runs it (``medrepro.runner.run_step``: the
  error becomes one logged line and exit 1), on a damaged copy of a small stand-in dataset made once per module;
* ``cli_case``: the ``medrepro`` command on a small run's records and tables.

Each case must exit with its code, print no traceback, report the problem in one line of at most ``max_chars``
characters besides the case's folder path (the output around it stays within ``MAX_OUTPUT_LINES``) that contains
every string of ``names``, and leave none of its ``absent`` paths (nor their temporary files). A new study adds a
section of cases to ``CASES``; a case the library does not meet yet is wrapped in ``pytest.param`` with a strict
``xfail`` whose reason names the problem, so that the fix shows as an unexpected pass.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from medrepro import runner
from medrepro.runner import Job, _Namespace, execute

from conftest import REPO

MAX_MESSAGE_CHARS = 300
# Where the message also says what to download, from where and where to put it (the datasets' instructions).
INSTRUCTIONS_CHARS = 900
# Where it lists what was expected (a table's header, the allowed labels), or gives both digests and the
# command that re-pins the data.
LISTING_CHARS = 500
DIGESTS_CHARS = 700
# Added per DICOM the message names: its path below the raw folder in the NBIA retriever's layout (subject, study
# and series folders) is about 120 characters.
DICOM_PATH_CHARS = 150
# Lines the user sees around the message: Snakemake's notes (profile, config merge) or a step's start line.
MAX_OUTPUT_LINES = 6
LOG_PREFIX = re.compile(r"^\S+ \S+ (?P<level>[A-Z]+) \S+: ")


@dataclass
class Outcome:
    exit_code: int
    output: str  # all the user sees: stderr, or the job's log
    messages: list[str]  # the lines that report problems, without log prefixes


@dataclass(frozen=True)
class BadInput:
    name: str
    run: Callable[[Path, "Stock"], Outcome]  # sets the mistake up in the case's folder and runs the command
    names: tuple[str, ...]  # what one message line must contain; "{case}" stands for the case's folder
    exit_code: int = 1
    absent: tuple[str, ...] = ()  # paths under the case's folder (or absolute) that must not exist afterwards
    max_chars: int = MAX_MESSAGE_CHARS


# ---------------------------------------------------------------- what every case starts from


@dataclass
class Stock:
    """Small stand-ins of every dataset in their native formats, and a small run's records and tables."""

    raw: Path
    run: Path

    def copy_raw(self, dataset: str, case: Path, user_copy: bool = False) -> Path:
        """A fresh copy of a stand-in; ``user_copy``: without the generator's files, as a real download."""
        target = case / "raw" / dataset
        shutil.copytree(self.raw / dataset, target)
        if user_copy:
            for name in ("MANIFEST.sha256", "synthetic_truth.csv"):
                (target / name).unlink(missing_ok=True)
        return target

    def copy_run(self, case: Path) -> None:
        shutil.copytree(self.run, case, dirs_exist_ok=True)


@contextlib.contextmanager
def _working_directory(path: Path):
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def _make_run(root: Path) -> None:
    """raw/a.txt -> results/tables/t.csv (and its .md rendering) with per-row lineage, recorded like a workflow job."""
    (root / "raw").mkdir(parents=True)
    (root / "raw" / "a.txt").write_text("raw data A\n")

    def table(job: Job) -> None:
        pd.DataFrame({"name": ["a"], "value": [11]}).to_csv(job.output.csv, index=False)
        Path(job.output.md).write_text("| name | value |\n|---|---|\n| a | 11 |\n")
        job.cells = {"key_columns": ["name"], "rows": {"a": ["raw/a.txt"]}}

    with _working_directory(root):
        Path("results/tables").mkdir(parents=True)
        execute(Job(rule="table", input=_Namespace(a="raw/a.txt"),
                    output=_Namespace(csv="results/tables/t.csv", md="results/tables/t.md"),
                    params=_Namespace(), provenance_dir="results/provenance"), table)


@pytest.fixture(scope="module")
def stock(tmp_path_factory) -> Stock:
    from medrepro.studies.chest.cxr14.synthetic import generate_cxr14
    from medrepro.studies.chest.synthetic import generate_dataset
    from medrepro.studies.mammo_registration.synthetic import generate_cbis_ddsm

    root = tmp_path_factory.mktemp("stock")
    generate_dataset("JSRT", root / "raw" / "JSRT", n_subjects=2, seed=0)
    generate_dataset("Montgomery", root / "raw" / "Montgomery", n_subjects=3, seed=0, image_size=(128, 104))
    generate_dataset("Shenzhen", root / "raw" / "Shenzhen", n_subjects=3, seed=0, image_size=(128, 128))
    generate_cxr14(root / "raw" / "ChestX-ray14", n_images=4, seed=0, image_size=64)
    # Six patients give pairs in every split (train, val and test; see test_mammo_stand_in_pairs_fill_every_split).
    generate_cbis_ddsm(root / "raw" / CBIS, n_patients=6, seed=0, image_size=(120, 72), test_fraction=0.35)
    _make_run(root / "run")
    return Stock(raw=root / "raw", run=root / "run")


# ---------------------------------------------------------------- config mistakes: snakemake -n


def config_case(name: str, config: str, *names: str, max_chars: int = MAX_MESSAGE_CHARS) -> BadInput:
    """``config`` is merged over config/config.yaml; the message names this file and the key."""

    def run(case: Path, stock: Stock) -> Outcome:
        path = case / "config.yaml"
        path.write_text(config)
        result = subprocess.run(
            [sys.executable, "-m", "snakemake", "-n", "--configfile", str(path), "--config",
             f"results_dir={case / 'results'}"], cwd=REPO, capture_output=True, text=True, timeout=300)
        return Outcome(result.returncode, result.stderr + result.stdout,
                       [line for line in result.stderr.splitlines() if line.startswith(f"{path}: ")])

    return BadInput(name, run, (f"{{case}}/config.yaml: {names[0]}", *names[1:]), absent=("results",),
                    max_chars=max_chars)


# ---------------------------------------------------------------- data mistakes: a rule's step


class _Named(list):
    """Like Snakemake's Namedlist: the values in order, ``items()`` by name."""

    def __init__(self, **named):
        super().__init__(named.values())
        self.named = named

    def items(self):
        return self.named.items()


@dataclass
class StepRun:
    rule: str
    step: str  # module:function, as in the rule's params.step
    output: dict
    params: dict
    input: dict | None = None
    wildcards: dict | None = None


def _run_step(case: Path, run: StepRun, level: str) -> Outcome:
    """Run a step as scripts/step.py does, with its logging; restore the test's logging afterwards."""
    log_file = case / "results" / "logs" / f"{run.rule}.log"
    smk = type("Snakemake", (), {})()
    smk.rule, smk.threads, smk.log = run.rule, 1, _Named(log=str(log_file))
    smk.input, smk.output = _Named(**(run.input or {})), _Named(**run.output)
    smk.params, smk.wildcards = _Named(step=run.step, **run.params), _Named(**(run.wildcards or {}))
    smk.resources, smk.config = _Named(_cores=1), {"provenance_dir": str(case / "results" / "provenance")}
    root = logging.getLogger()
    handlers, level_before = root.handlers[:], root.level
    try:
        runner.run_step(smk)
        code = 0
    except SystemExit as exc:
        code = exc.code
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level_before)
    output = log_file.read_text()
    messages = [LOG_PREFIX.sub("", line) for line in output.splitlines()
                if (m := LOG_PREFIX.match(line)) and m["level"] == level]
    return Outcome(code, output, messages)


def step_case(name: str, prepare: Callable[[Path, Stock], StepRun], *names: str, exit_code: int = 1,
              level: str = "ERROR", max_chars: int = MAX_MESSAGE_CHARS, absent: tuple[str, ...] = ()) -> BadInput:
    """``prepare`` damages a copy of a stand-in and says which step to run on it; a failed step leaves no record."""

    def run(case: Path, stock: Stock) -> Outcome:
        return _run_step(case, prepare(case, stock), level)

    no_record = ("results/provenance/jobs",) if exit_code else ()
    return BadInput(name, run, names, exit_code, absent + no_record, max_chars)


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


def cxr14_manifest(damage: Callable[[Path], None], n_images: int = 4) -> Callable:
    def prepare(case: Path, stock: Stock) -> StepRun:
        raw = stock.copy_raw("ChestX-ray14", case)
        damage(raw)
        return StepRun("cxr14_manifest", "medrepro.studies.chest.cxr14.steps:manifest",
                       {"manifest": str(case / "results" / "cxr14" / "manifest.csv")},
                       {"raw_dir": str(raw), "n_images": n_images, "shard_size": 2})

    return prepare


# ---- damage done to a copy


def _truncate(relative: str, size: int = 100) -> Callable[[Path], None]:
    def damage(raw: Path) -> None:
        with open(raw / relative, "r+b") as handle:
            handle.truncate(size)

    return damage


def _delete(relative: str) -> Callable[[Path], None]:
    def damage(raw: Path) -> None:
        target = raw / relative
        shutil.rmtree(target) if target.is_dir() else target.unlink()

    return damage


def _overwrite(relative: str, content: bytes) -> Callable[[Path], None]:
    def damage(raw: Path) -> None:
        (raw / relative).write_bytes(content)

    return damage


def _flip_a_byte(relative: str) -> Callable[[Path], None]:
    def damage(raw: Path) -> None:
        data = bytearray((raw / relative).read_bytes())
        data[-20] ^= 0xFF
        (raw / relative).write_bytes(bytes(data))

    return damage


def _mask_of_size(relative: str, shape: tuple[int, int]) -> Callable[[Path], None]:
    def damage(raw: Path) -> None:
        Image.fromarray(np.zeros(shape, np.uint8)).save(raw / relative)

    return damage


def _edit_table(edit: Callable[[str], str]) -> Callable[[Path], None]:
    def damage(raw: Path) -> None:
        table = raw / "Data_Entry_2017.csv"
        table.write_text(edit(table.read_text()))

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


def pinned_then_changed(dataset: str, relative: str) -> Callable:
    """A user's copy pinned on first use (as the obtain step does), then one of its files edited."""

    def prepare(case: Path, stock: Stock) -> StepRun:
        from medrepro import pinning

        run = obtain(dataset, "verify")(case, stock)
        raw = Path(run.params["raw_dir"])
        pin = pinning.pin_path(dataset, raw, "verify", pinning.pins_dir(case / "results" / "provenance"))
        pinning.pin_first_use(dataset, raw, pin)
        _flip_a_byte(relative)(raw)
        return run

    return prepare


def autoencoder_with_corrupt_checkpoints(case: Path, stock: Stock) -> StepRun:
    """The autoencoder's training step with both its checkpoints damaged (the latest and the previous one)."""
    from medrepro.atomic import write_json
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


# ---------------------------------------------------------------- mammo_registration: CBIS-DDSM's files

CBIS = "CBIS-DDSM"
MAMMO_OUT = "results/mammo_registration"
MAMMO_PAIRS = tuple(f"{MAMMO_OUT}/{name}" for name in ("pairs.npz", "pairs.csv", "pairs.json"))
MAMMO_PARAMS = {"seed": 0, "longest_side": 64, "aspect": 0.6, "pairing_rule": "abnormality_id",
                "val_fraction": 0.25, "mirror_side": "LEFT", "exclude_bad_masks": False}
MASS_TRAIN, CALC_TEST = "mass_case_description_train_set.csv", "calc_case_description_test_set.csv"


def mammo_prepare(damage: Callable[[Path], None]) -> Callable:
    """The prepare step (DICOMs and case tables -> pairs) on a copy of the CBIS-DDSM stand-in, damaged by ``damage``."""

    def prepare(case: Path, stock: Stock) -> StepRun:
        raw = stock.copy_raw(CBIS, case)
        damage(raw)
        out = case / MAMMO_OUT
        return StepRun("mammo_registration_prepare", "medrepro.studies.mammo_registration.steps:prepare",
                       {"pairs": str(out / "pairs.npz"), "table": str(out / "pairs.csv"),
                        "summary": str(out / "pairs.json")},
                       {"raw_dir": str(raw), **MAMMO_PARAMS})

    return prepare


def mammo_obtain(damage: Callable[[Path], None]) -> Callable:
    """The obtain step (layout, then first-use pinning) on a user's copy of the stand-in, damaged by ``damage``."""

    def prepare(case: Path, stock: Stock) -> StepRun:
        raw = stock.copy_raw(CBIS, case, user_copy=True)
        damage(raw)
        return StepRun("mammo_registration_obtain", "medrepro.studies.mammo_registration.steps:obtain",
                       {"manifest": str(case / MAMMO_OUT / "raw_manifest.sha256")},
                       {"source": "verify", "raw_dir": str(raw)})

    return prepare


def _series_dicom(raw: Path, subject: str, series: str) -> Path:
    """The one DICOM of a subject's series (the stand-in uses the NBIA retriever's layout)."""
    found = sorted((raw / CBIS / subject).glob(f"*/1.000000-{series}-*/*.dcm"))
    assert len(found) == 1, (subject, series, found)  # the stand-in changed: pick another subject
    return found[0]


def _full_image(raw: Path, subject: str) -> Path:
    return _series_dicom(raw, subject, "full mammogram images")


def _roi_mask(raw: Path, subject: str) -> Path:
    return _series_dicom(raw, subject, "ROI mask images")


def _truncate_dicom(subject: str) -> Callable[[Path], None]:
    """Cut a full mammogram in the middle of its pixel data (its header still reads), as an interrupted copy."""

    def damage(raw: Path) -> None:
        path = _full_image(raw, subject)
        with open(path, "r+b") as handle:
            handle.truncate(path.stat().st_size // 2)

    return damage


def _retag(locate: Callable[[Path, str], Path], subject: str, **tags) -> Callable[[Path], None]:
    """Rewrite one DICOM with some header elements changed and its pixel data kept."""

    def damage(raw: Path) -> None:
        import pydicom

        path = locate(raw, subject)
        dataset = pydicom.dcmread(path)
        for keyword, value in tags.items():
            setattr(dataset, keyword, value)
        dataset.save_as(path)

    return damage


def _rewrite_mask(subject: str, pixels: Callable[[tuple[int, int]], np.ndarray]) -> Callable[[Path], None]:
    """Replace a lesion's ROI mask by ``pixels(shape of the original mask)``."""

    def damage(raw: Path) -> None:
        from medrepro.shared.dicom import dicom_shape, write_mammogram

        path = _roi_mask(raw, subject)
        write_mammogram(path, pixels(dicom_shape(path)), PatientID=subject, SeriesDescription="ROI mask images")

    return damage


def _mask_larger_than_its_image(shape: tuple[int, int]) -> np.ndarray:
    # Larger than the mammogram, so it stays the largest file of its series and is still taken for the mask.
    mask = np.zeros((shape[0] + 10, shape[1] + 8), np.uint8)
    mask[20:30, 10:20] = 255
    return mask


def _edit_case_table(name: str, edit: Callable[[list[str], list[list[str]]], tuple[list[str], list[list[str]]]],
                     changes: int | None = None) -> Callable[[Path], None]:
    """Rewrite a case table through the csv module (its quoted paths hold newlines); ``changes``: how many rows
    (or columns) ``edit`` must remove, so that a changed stand-in fails here rather than in the case."""

    def damage(raw: Path) -> None:
        path = raw / name
        with open(path, newline="", encoding="utf-8") as handle:
            header, *rows = list(csv.reader(handle))
        new_header, new_rows = edit(header, rows)
        if changes is not None:
            assert len(header) + len(rows) - len(new_header) - len(new_rows) == changes, (name, header, rows)
        with open(path, "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle, lineterminator="\n").writerows([new_header, *new_rows])

    return damage


def _without_column(column: str) -> Callable:
    def edit(header, rows):
        keep = [i for i, name in enumerate(header) if name != column]
        return [header[i] for i in keep], [[row[i] for i in keep] for row in rows]

    return edit


def _without_mlo_rows(patient: str | None = None, side: str | None = None, abnormality: str | None = None) -> Callable:
    """Drop the MLO rows (of one lesion, when given) from a case table."""

    def edit(header, rows):
        column = {name: i for i, name in enumerate(header)}
        wanted = {"image view": "MLO", "patient_id": patient, "left or right breast": side,
                  "abnormality id": abnormality}
        drop = [row for row in rows
                if all(value is None or row[column[key]] == value for key, value in wanted.items())]
        return header, [row for row in rows if row not in drop]

    return edit


def _no_mlo_rows_anywhere(raw: Path) -> None:
    from medrepro.studies.mammo_registration.readers.cbis_ddsm import CASE_DESCRIPTION_FILES

    for name in CASE_DESCRIPTION_FILES.values():
        _edit_case_table(name, _without_mlo_rows())(raw)


def _one_cc_without_its_mlo(raw: Path) -> None:
    """The Test patient P_00003 has two left-breast lesions: dropping one's MLO row keeps a test pair."""
    _edit_case_table(CALC_TEST, _without_mlo_rows("P_00003", "LEFT", "2"), changes=1)(raw)


# ---------------------------------------------------------------- the medrepro command


def cli_case(name: str, args: list[str], *names: str, prepare: Callable[[Path], None] | None = None,
             exit_code: int = 2, close_stdout: bool = False, absent: tuple[str, ...] = ()) -> BadInput:
    """``medrepro`` in a copy of a small run (``{case}`` in ``args`` is its folder). ``close_stdout``: the reader
    of the output went away before it was written (``| head``)."""

    def run(case: Path, stock: Stock) -> Outcome:
        stock.copy_run(case)
        if prepare:
            prepare(case)
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
        command = [sys.executable, "-m", "medrepro.cli", *(_fill(a, case) for a in args)]
        process = subprocess.Popen(command, cwd=case, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        if close_stdout:
            process.stdout.close()
            stderr = process.stderr.read().decode()
            process.wait(timeout=120)
        else:
            _, stderr_bytes = process.communicate(timeout=120)
            stderr = stderr_bytes.decode()
        return Outcome(process.returncode, stderr, [line for line in stderr.splitlines() if line.startswith("error: ")])

    return BadInput(name, run, names, exit_code, absent)


def _read_only_path(case: Path) -> str:
    """A place the crate cannot be written: in a folder without write permission, or, for root (whom
    permissions do not stop), in /proc."""
    return "/proc/medrepro-bad-input.crate.zip" if os.geteuid() == 0 else str(case / "read-only" / "crate.zip")


def _make_read_only(case: Path) -> None:
    if os.geteuid() != 0:
        (case / "read-only").mkdir()
        (case / "read-only").chmod(0o555)


def _write(relative: str, content: bytes) -> Callable[[Path], None]:
    def prepare(case: Path) -> None:
        path = case / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)

    return prepare


def _move_table_out_of_its_run(case: Path) -> None:
    (case / "elsewhere").mkdir()
    shutil.copy(case / "results" / "tables" / "t.csv", case / "elsewhere" / "t.csv")


def _nothing_obtained(dataset: str) -> tuple[str, ...]:
    """A failed obtain step writes neither its verified manifest nor a pin of the bad copy."""
    return (f"results/{dataset}/raw_manifest.sha256", "results/provenance/pins")


SCR_HEART = "scr/scratch/fold1/masks/heart"
MC_IMAGES, MC_MASKS, MC_READINGS = (f"MontgomerySet/{f}" for f in ("CXR_png", "ManualMask", "ClinicalReadings"))
CELL = ["--row", "a", "--column", "value"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RAGGED_CSV = b"name,value\na,1\nb,2,3,4\n"
READ_ONLY = "{read_only}"


# ---------------------------------------------------------------- the cases

CASES: list = [  # BadInput, or pytest.param(BadInput, marks=xfail) for a known library problem
    # ---- every study: the config file
    config_case("top_level_typo", "sed: 1\n", "unknown key sed", "allowed keys at the top level: seed,"),
    config_case("nested_unknown_key", "chest: {registration: {stepz: 3}}\n", "unknown key chest.registration.stepz",
                "allowed keys under chest.registration: methods, steps", "did you mean steps?"),
    config_case("wrong_type", "chest: {registration: {steps: many}}\n", "chest.registration.steps = 'many'",
                "must be a whole number >= 1"),
    config_case("section_not_a_mapping", "chest: {registration: 5}\n", "chest.registration = 5",
                "must be a mapping"),
    config_case("out_of_range", "chest: {autoencoder: {noise_p: 1.5}}\n", "chest.autoencoder.noise_p = 1.5",
                "<= 1"),
    config_case("negative_seed", "seed: -1\n", "seed = -1", ">= 0"),
    config_case("not_a_multiple_of_8", "chest: {prealign: {image_size: 60}}\n", "chest.prealign.image_size = 60",
                "a multiple of 8"),
    config_case("unknown_method", "chest: {registration: {methods: [RegNet, FooNet]}}\n",
                "chest.registration.methods[1] = 'FooNet'", "one of RegNet, CE-RegNet, AE-RegNet, AC-RegNet"),
    config_case("unknown_study", "studies: [chest, brain]\n", "studies[1] = 'brain'", "one of chest, cxr14"),
    config_case("exclusive_bound", "chest: {registration: {ce_epsilon: 0.5}}\n",
                "chest.registration.ce_epsilon = 0.5", "< 0.5"),
    # ---- chest: its config section
    config_case("jsrt_download", "chest: {datasets: {JSRT: {source: download}}}\n",
                "chest.datasets.JSRT.source = 'download'", "must be one of synthetic, verify", "db.jsrt.or.jp",
                "source: verify", max_chars=500),
    config_case("jsrt_verify_without_raw_dir", "chest: {datasets: {JSRT: {source: verify}}}\n",
                "chest.datasets.JSRT.raw_dir = null", "set raw_dir"),
    config_case("montgomery_verify_without_raw_dir", "chest: {datasets: {Montgomery: {source: verify}}}\n",
                "chest.datasets.Montgomery.raw_dir = null", "set raw_dir"),
    config_case("fractions_not_summing_to_1", "chest: {split: {fractions: [0.5, 0.3, 0.3]}}\n",
                "chest.split.fractions = [0.5, 0.3, 0.3]", "summing to 1 (sums to 1.1, not 1)"),
    config_case("fractions_of_two_folds", "chest: {split: {fractions: [0.5, 0.5]}}\n",
                "chest.split.fractions = [0.5, 0.5]", "exactly 3 items"),
    config_case("jsrt_spacing_given", "chest: {datasets: {JSRT: {spacing_mm: 0.2}}}\n",
                "chest.datasets.JSRT.spacing_mm = 0.2", "leave it null"),
    config_case("negative_spacing", "chest: {datasets: {Montgomery: {spacing_mm: -1}}}\n",
                "chest.datasets.Montgomery.spacing_mm = -1", "null or a number > 0"),
    # ---- chest: its data
    step_case("jsrt_truncated_image", obtain("JSRT", "verify", _truncate("images/JPCLN001.IMG")),
              "JPCLN001.IMG (100 bytes)", "must be exactly", "db.jsrt.or.jp",
              max_chars=INSTRUCTIONS_CHARS, absent=_nothing_obtained("JSRT")),
    step_case("jsrt_missing_scr_mask", obtain("JSRT", "verify", _delete(f"{SCR_HEART}/JPCNN001.gif")),
              "scr: SCR masks missing", "JPCNN001 (heart", "isi.uu.nl", max_chars=INSTRUCTIONS_CHARS,
              absent=_nothing_obtained("JSRT")),
    step_case("verify_without_the_data", obtain("JSRT", "verify", _delete(".")),
              "{case}/raw/JSRT/images: no JSRT images", "db.jsrt.or.jp", max_chars=INSTRUCTIONS_CHARS,
              absent=_nothing_obtained("JSRT")),
    step_case("checksum_mismatch", obtain("Montgomery", "synthetic", _flip_a_byte(f"{MC_IMAGES}/MCUCXR_0002_0.png")),
              "MCUCXR_0002_0.png", "sha256", max_chars=DIGESTS_CHARS,
              absent=("results/Montgomery/raw_manifest.sha256",)),
    step_case("montgomery_missing_mask",
              obtain("Montgomery", "verify", _delete(f"{MC_MASKS}/rightMask/MCUCXR_0001_0.png")),
              "ManualMask: lung masks missing", "MCUCXR_0001_0 (rightMask)", max_chars=INSTRUCTIONS_CHARS,
              absent=_nothing_obtained("Montgomery")),
    step_case("shenzhen_without_masks", obtain("Shenzhen", "verify", _delete("shcxr-lung-mask")),
              "shcxr-lung-mask/mask: no lung masks", "kaggle", max_chars=INSTRUCTIONS_CHARS,
              absent=_nothing_obtained("Shenzhen")),
    step_case("mask_of_the_wrong_size",
              convert("Montgomery", _mask_of_size(f"{MC_MASKS}/leftMask/MCUCXR_0001_0.png", (50, 60)), 0.35),
              "leftMask/MCUCXR_0001_0.png", "mask is 60 x 50 (w x h), image is 104 x 128 (w x h)",
              absent=("results/Montgomery/converted",)),
    step_case("unreadable_png",
              convert("Montgomery", _overwrite(f"{MC_IMAGES}/MCUCXR_0002_0.png", PNG_SIGNATURE + b"\0" * 40), 0.35),
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
              convert("Montgomery", _overwrite(f"{MC_READINGS}/MCUCXR_0001_0.txt", b""), 0.35),
              "ClinicalReadings/MCUCXR_0001_0.txt: clinical reading is empty", "sex and age left empty",
              exit_code=0, level="WARNING"),
    # ---- cxr14: its config section and data
    config_case("cxr14_verify_without_raw_dir", "cxr14: {source: verify}\n", "cxr14.raw_dir = null", "set raw_dir"),
    config_case("cxr14_download", "cxr14: {source: download}\n", "cxr14.source = 'download'",
                "must be one of synthetic, verify"),
    step_case("cxr14_label_table_without_a_column",
              cxr14_manifest(_edit_table(lambda t: t.replace("Patient ID", "Patient", 1))),
              "Data_Entry_2017.csv: missing columns Patient ID", max_chars=LISTING_CHARS,
              absent=("results/cxr14/manifest.csv",)),
    step_case("cxr14_unknown_finding",
              cxr14_manifest(_edit_table(lambda t: re.sub(r"(\.png,)[^,]+", r"\1Cardiomegally", t, count=1))),
              "Data_Entry_2017.csv", "Cardiomegally", max_chars=LISTING_CHARS, absent=("results/cxr14/manifest.csv",)),
    step_case("cxr14_fewer_images_than_n_images", cxr14_manifest(lambda raw: None, n_images=10),
              "Data_Entry_2017.csv: lists 4 images", "cxr14.n_images = 10", absent=("results/cxr14/manifest.csv",)),
    step_case("cxr14_missing_image", cxr14_manifest(_delete("images/00000002_000.png")),
              "00000002_000.png", absent=("results/cxr14/manifest.csv",)),
    # ---- mammo_registration: CBIS-DDSM's DICOMs and case tables
    step_case("mammo_truncated_full_mammogram", mammo_prepare(_truncate_dicom("Mass-Training_P_00007_LEFT_CC")),
              "Mass-Training_P_00007_LEFT_CC/", "truncated", max_chars=MAX_MESSAGE_CHARS + DICOM_PATH_CHARS,
              absent=MAMMO_PAIRS),
    step_case("mammo_palette_colour_dicom",
              mammo_prepare(_retag(_full_image, "Calc-Test_P_00003_RIGHT_MLO",
                                   PhotometricInterpretation="PALETTE COLOR")),
              "Calc-Test_P_00003_RIGHT_MLO/", "unsupported PhotometricInterpretation 'PALETTE COLOR'",
              "MONOCHROME1 or MONOCHROME2", absent=MAMMO_PAIRS),
    step_case("mammo_32_bit_dicom",
              mammo_prepare(_retag(_full_image, "Calc-Training_P_00009_LEFT_CC", BitsAllocated=32)),
              "Calc-Training_P_00009_LEFT_CC/", "unsupported BitsAllocated 32", "8 or 16", absent=MAMMO_PAIRS),
    step_case("mammo_mask_stored_bits_beyond_allocated",
              mammo_prepare(_retag(_roi_mask, "Calc-Training_P_00005_RIGHT_MLO_1", BitsStored=12)),
              "Calc-Training_P_00005_RIGHT_MLO_1/", "BitsStored 12 is outside 1..BitsAllocated (8)",
              absent=MAMMO_PAIRS),
    step_case("mammo_case_table_without_abnormality_id",
              mammo_prepare(_edit_case_table(MASS_TRAIN, _without_column("abnormality id"), changes=1)),
              f"{MASS_TRAIN}: mass case table lacks column(s) abnormality id", max_chars=LISTING_CHARS,
              absent=MAMMO_PAIRS),
    step_case("mammo_case_table_without_image_paths",
              mammo_prepare(_edit_case_table(CALC_TEST, _without_column("image file path"), changes=1)),
              f"{CALC_TEST}: calc case table lacks column(s) image file path", max_chars=LISTING_CHARS,
              absent=MAMMO_PAIRS),
    step_case("mammo_missing_full_mammogram_folder",
              mammo_prepare(_delete(f"{CBIS}/Mass-Training_P_00007_LEFT_MLO")),
              f"Mass-Training_P_00007_LEFT_MLO: no DICOM for {MASS_TRAIN} row",
              "image file path", max_chars=INSTRUCTIONS_CHARS, absent=MAMMO_PAIRS),
    step_case(
        "mammo_mask_larger_than_its_image",
        mammo_prepare(_rewrite_mask("Mass-Test_P_00010_RIGHT_CC_1", _mask_larger_than_its_image)),
        "Mass-Test_P_00010_RIGHT_CC_1/", "ROI mask is 130 x 80", "120 x 72", "exclude_bad_masks",
        max_chars=MAX_MESSAGE_CHARS + 2 * DICOM_PATH_CHARS, absent=MAMMO_PAIRS),
    step_case(
        "mammo_empty_mask",
        mammo_prepare(_rewrite_mask("Calc-Training_P_00008_RIGHT_MLO_1", lambda shape: np.zeros(shape, np.uint8))),
        "Calc-Training_P_00008_RIGHT_MLO_1/", "is empty (no nonzero pixel)", "exclude_bad_masks",
        max_chars=MAX_MESSAGE_CHARS + 2 * DICOM_PATH_CHARS, absent=MAMMO_PAIRS),
    # Not an error, but never silent: the skipped CC lesions are counted (and in pairs.json, tested below).
    step_case("mammo_cc_without_mlo_partner", mammo_prepare(_one_cc_without_its_mlo),
              "1 CC lesion(s) have no MLO partner under pairing rule 'abnormality_id'", exit_code=0, level="WARNING"),
    step_case("mammo_no_pair_left", mammo_prepare(_no_mlo_rows_anywhere), MASS_TRAIN, CALC_TEST,
              "no CC lesion has an MLO partner under pairing rule 'abnormality_id'", max_chars=LISTING_CHARS,
              absent=MAMMO_PAIRS),
    step_case(
        "mammo_obtain_missing_subject_folder", mammo_obtain(_delete(f"{CBIS}/Mass-Training_P_00007_LEFT_MLO")),
        "no DICOM folder for 1 of the", "Mass-Training_P_00007_LEFT_MLO", "cancerimagingarchive.net",
        max_chars=INSTRUCTIONS_CHARS, absent=_nothing_obtained("mammo_registration")),
    step_case("mammo_obtain_missing_case_table", mammo_obtain(_delete(CALC_TEST)),
              f"case-description CSV(s) missing: {CALC_TEST}", "cancerimagingarchive.net",
              max_chars=INSTRUCTIONS_CHARS, absent=_nothing_obtained("mammo_registration")),
    # ---- every study: the provenance command
    cli_case("provenance_of_a_markdown_table", ["provenance", "results/tables/t.md", *CELL],
             "results/tables/t.md: not a CSV table", "use results/tables/t.csv"),
    cli_case("provenance_of_a_figure", ["provenance", "results/figures/f.png", *CELL],
             "results/figures/f.png: not a CSV table", prepare=_write("results/figures/f.png", PNG_SIGNATURE)),
    cli_case("provenance_of_a_broken_csv", ["provenance", "results/tables/b.csv", *CELL],
             "results/tables/b.csv: cannot be read as a CSV table", prepare=_write("results/tables/b.csv", RAGGED_CSV)),
    cli_case("provenance_of_a_missing_table", ["provenance", "results/tables/nope.csv", *CELL],
             "results/tables/nope.csv: no such table"),
    cli_case("provenance_of_an_unknown_row", ["provenance", "results/tables/t.csv", "--row", "zz", "--column", "value"],
             "results/tables/t.csv: no row 'zz'", "rows: a"),
    cli_case("provenance_of_an_unknown_column", ["provenance", "results/tables/t.csv", "--row", "a", "--column", "no"],
             "results/tables/t.csv: no column 'no'", "value"),
    cli_case("provenance_without_records", ["provenance", "elsewhere/t.csv", *CELL],
             "elsewhere/t.csv: no provenance records in {case}/provenance/jobs", "give --provenance-dir",
             prepare=_move_table_out_of_its_run),
    cli_case("provenance_with_a_damaged_record", ["provenance", "results/tables/t.csv", *CELL],
             "results/provenance/jobs/table.json: not a readable provenance record", "--forcerun table",
             prepare=_write("results/provenance/jobs/table.json", b'{"rule": "tab')),
    cli_case("provenance_into_a_closed_pipe", ["provenance", "results/tables/t.csv", *CELL],
             exit_code=141, close_stdout=True),
    cli_case("export_to_a_read_only_place", ["provenance", "--export", READ_ONLY, "--results", "results"],
             READ_ONLY + ": ", "writable", prepare=_make_read_only, absent=(READ_ONLY,)),
    cli_case("export_onto_a_folder", ["provenance", "--export", "results/tables", "--results", "results"],
             "results/tables: is a folder", "give a file name"),
    cli_case("export_into_a_missing_folder", ["provenance", "--export", "{case}/no/such/c.zip", "--results", "results"],
             "folder {case}/no/such does not exist", absent=("no",)),
    cli_case("export_below_a_file", ["provenance", "--export", "results/tables/t.csv/c.zip", "--results", "results"],
             "results/tables/t.csv is not a folder"),
    step_case("user_copy_changed_after_pinning", pinned_then_changed("Montgomery", f"{MC_IMAGES}/MCUCXR_0002_0.png"),
              "MCUCXR_0002_0.png", "sha256", "medrepro data repin", max_chars=DIGESTS_CHARS,
              absent=("results/Montgomery/raw_manifest.sha256",)),
    step_case("both_training_checkpoints_corrupt", autoencoder_with_corrupt_checkpoints,
              "autoencoder.ckpt", "autoencoder.ckpt.prev", "delete", max_chars=LISTING_CHARS,
              absent=("results/JSRT/models/autoencoder.pt", "results/JSRT/models/autoencoder.losses.csv")),
]


def _unwrapped(entry) -> BadInput:
    """A case of ``CASES``, also one wrapped in ``pytest.param`` (a known library problem, marked xfail)."""
    return entry if isinstance(entry, BadInput) else entry.values[0]


def _fill(text: str, folder: Path) -> str:
    return text.replace("{case}", str(folder)).replace(READ_ONLY, _read_only_path(folder))


def _leftovers(path: Path) -> list[str]:
    """``path`` itself, and the temporary files an atomic write would have left beside it."""
    found = [str(path)] if path.exists() else []
    if path.parent.is_dir():
        found += [str(p) for p in path.parent.iterdir() if p.name.startswith(f".{path.name}.")]
    return found


@pytest.mark.parametrize("case", CASES, ids=[_unwrapped(c).name for c in CASES])
def test_a_bad_input_gives_one_clear_line_and_leaves_nothing(case, stock, tmp_path):
    folder = tmp_path / "case"
    folder.mkdir()
    outcome = case.run(folder, stock)
    names = [_fill(n, folder) for n in case.names]

    assert outcome.exit_code == case.exit_code, outcome.output[-3000:]
    assert "Traceback" not in outcome.output, outcome.output[-3000:]
    assert len(outcome.output.strip().splitlines()) <= MAX_OUTPUT_LINES, outcome.output[-3000:]
    if names:
        assert any(all(n in line for n in names) for line in outcome.messages), (names, outcome.output[-3000:])
        if case.exit_code:
            assert len(outcome.messages) == 1, outcome.output[-3000:]
        lengths = [len(line.replace(str(folder), "")) for line in outcome.messages]  # the folder is pytest's
        assert max(lengths) <= case.max_chars, lengths
    else:  # nothing to report: nothing printed
        assert outcome.output.strip() == "", outcome.output
    left = [p for a in case.absent for p in _leftovers(folder / _fill(a, folder))]
    assert not left, left


def _mammo_summary(damage: Callable[[Path], None], case: Path, stock: Stock) -> dict:
    """pairs.json of the prepare step on a damaged copy of the CBIS-DDSM stand-in (the step must succeed)."""
    run = mammo_prepare(damage)(case, stock)
    outcome = _run_step(case, run, "ERROR")
    assert outcome.exit_code == 0, outcome.output[-3000:]
    return json.loads(Path(run.output["summary"]).read_text())


def test_mammo_stand_in_pairs_fill_every_split(stock, tmp_path):
    """The cases above damage a copy that, undamaged, prepares into training, validation and test pairs."""
    summary = _mammo_summary(lambda raw: None, tmp_path, stock)
    assert min(summary["train_pairs"], summary["val_pairs"], summary["test_pairs"]) >= 1, summary
    assert summary["unpaired_cc"] == summary["unpaired_mlo"] == 0 and summary["excluded"] == [], summary


def test_mammo_cc_without_mlo_partner_is_counted_in_the_summary(stock, tmp_path):
    complete = _mammo_summary(lambda raw: None, tmp_path / "complete", stock)
    damaged = _mammo_summary(_one_cc_without_its_mlo, tmp_path / "damaged", stock)
    assert damaged["unpaired_cc"] == 1 and damaged["unpaired_mlo"] == 0, damaged
    assert damaged["pairs"] == complete["pairs"] - 1 and damaged["test_pairs"] == complete["test_pairs"] - 1
    assert damaged["test_pairs"] >= 1, damaged


def test_there_are_at_least_30_kinds_of_bad_input():
    assert len(CASES) >= 30 and len({_unwrapped(c).name for c in CASES}) == len(CASES)


def test_the_schema_allows_download_exactly_for_the_datasets_that_can_be_downloaded():
    """The JSRT refusal in chest.schema.yaml agrees with the registered descriptions, and its hint with their URLs."""
    from medrepro import sourcing
    from medrepro.studies.chest.datasets import DATASET_SOURCES

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "chest.schema.yaml").read_text())
    general = schema["definitions"]["dataset"]["properties"]["source"]["enum"]
    for name, entry in schema["properties"]["datasets"]["properties"].items():
        narrowed = [part["properties"]["source"] for part in entry.get("allOf", [])
                    if "source" in part.get("properties", {})]
        allowed = narrowed[0]["enum"] if narrowed else general
        assert ("download" in allowed) == (sourcing.dataset(name).download is not None), name
        if narrowed:
            for source in DATASET_SOURCES[name]:
                assert all(url in narrowed[0]["description"] for url in source.urls), (name, source.what)
