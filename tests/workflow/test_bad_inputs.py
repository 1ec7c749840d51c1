"""Bad inputs of every study: each mistake gives one short message naming the file or key, and leaves nothing behind.

The cases are :class:`~support.bad_inputs.BadInput` s (tests/support/bad_inputs.py: how each is set up and run, and
what it must show): those about every study (the top-level config keys, the ``medrepro`` command on a small run)
below, and each study's in its ``CASES`` of tests/studies/<study>/bad_inputs.py (for a study in another study's
folder, tests/studies/**/<study>/bad_inputs.py), for every study of workflow/studies.yaml. The stand-in datasets the
cases damage are made once per module, by each study's ``make_stock(raw)``. A new study adds its bad_inputs.py.

Each case must exit with its code, print no traceback, report the problem in one line of at most ``max_chars``
characters besides the case's folder path (the output around it stays within ``MAX_OUTPUT_LINES``) that contains
every string of ``names``, and leave none of its ``absent`` paths (nor their temporary files). A case the library
does not meet yet is wrapped in ``pytest.param`` with a strict ``xfail`` whose reason names the problem, so that the
fix shows as an unexpected pass.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import pytest

from support.bad_inputs import (MAX_OUTPUT_LINES, PNG_SIGNATURE, READ_ONLY, Stock, cli_case, config_case, fill,
                                make_read_only, make_run, study_module, unwrapped)

from conftest import STUDIES

CELL = ["--row", "a", "--column", "value"]
RAGGED_CSV = b"name,value\na,1\nb,2,3,4\n"


def _write(relative: str, content: bytes) -> Callable[[Path], None]:
    def prepare(case: Path) -> None:
        path = case / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)

    return prepare


def _move_table_out_of_its_run(case: Path) -> None:
    (case / "elsewhere").mkdir()
    shutil.copy(case / "results" / "tables" / "t.csv", case / "elsewhere" / "t.csv")


EVERY_STUDY: list = [  # BadInput, or pytest.param(BadInput, marks=xfail) for a known library problem
    # ---- the config file's top level
    config_case("top_level_typo", "sed: 1\n", "unknown key sed", "allowed keys at the top level: seed,"),
    config_case("negative_seed", "seed: -1\n", "seed = -1", ">= 0"),
    config_case("unknown_study", "studies: [chest, lungs]\n", "studies[1] = 'lungs'", "one of chest, cxr14"),
    # ---- the provenance command
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
             READ_ONLY + ": ", "writable", prepare=make_read_only, absent=(READ_ONLY,)),
    cli_case("export_onto_a_folder", ["provenance", "--export", "results/tables", "--results", "results"],
             "results/tables: is a folder", "give a file name"),
    cli_case("export_into_a_missing_folder", ["provenance", "--export", "{case}/no/such/c.zip", "--results", "results"],
             "folder {case}/no/such does not exist", absent=("no",)),
    cli_case("export_below_a_file", ["provenance", "--export", "results/tables/t.csv/c.zip", "--results", "results"],
             "results/tables/t.csv is not a folder"),
]

STUDY_CASES = {study: study_module(study) for study in STUDIES}
CASES: list = [*EVERY_STUDY, *(case for module in STUDY_CASES.values() for case in module.CASES)]


@pytest.fixture(scope="module")
def stock(tmp_path_factory) -> Stock:
    root = tmp_path_factory.mktemp("stock")
    for module in STUDY_CASES.values():
        module.make_stock(root / "raw")
    make_run(root / "run")
    return Stock(raw=root / "raw", run=root / "run")


def _leftovers(path: Path) -> list[str]:
    """``path`` itself, and the temporary files an atomic write would have left beside it."""
    found = [str(path)] if path.exists() else []
    if path.parent.is_dir():
        found += [str(p) for p in path.parent.iterdir() if p.name.startswith(f".{path.name}.")]
    return found


@pytest.mark.parametrize("case", CASES, ids=[unwrapped(c).name for c in CASES])
def test_a_bad_input_gives_one_clear_line_and_leaves_nothing(case, stock, tmp_path):
    folder = tmp_path / "case"
    folder.mkdir()
    outcome = case.run(folder, stock)
    names = [fill(n, folder) for n in case.names]

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
    left = [p for a in case.absent for p in _leftovers(folder / fill(a, folder))]
    assert not left, left


def test_there_are_at_least_30_kinds_of_bad_input():
    assert len(CASES) >= 30 and len({unwrapped(c).name for c in CASES}) == len(CASES)
