"""Checks a study's smoke test makes of the suite's smoke run."""

import json
import subprocess
import sys
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_figures(results: Path, names) -> None:
    """Each named figure is a PNG under the run's figures/."""
    for name in names:
        png = results / "figures" / f"{name}.png"
        assert png.is_file() and png.read_bytes()[:8] == PNG_SIGNATURE, name


def explain_cell(results: Path, table: str, row: str, column: str, rules=()) -> dict:
    """``medrepro provenance`` of one cell of ``results/tables/<table>``, checked to name a record of each of
    ``rules`` (a rule's records start with its name); the explanation."""
    from conftest import REPO

    out = subprocess.run([sys.executable, "-m", "medrepro.pipeline.cli", "provenance", str(results / "tables" / table),
                          "--row", row, "--column", column, "--json"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    explanation = json.loads(out.stdout)
    recorded = [step.get("record", "") for step in explanation["steps"]]
    for rule in rules:
        assert any(r.startswith(rule) for r in recorded), (table, rule, recorded)
    return explanation


def crate_cell(crate, results: Path, table: str, row: str, column: str):
    """The crate's entity of one table cell (``row``: its key columns joined by ``/``), checked to hold the
    table's value."""
    import pandas as pd
    import pytest
    from urllib.parse import quote

    number = crate.get(quote(f"#{table}/{row}/{column}", safe="#/=,-_.~+@"))  # the crate's ids, URL-quoted
    assert number is not None, (table, row, column)
    keys = row.split("/")
    frame = pd.read_csv(results / "tables" / table, keep_default_na=False)
    value = frame[(frame.iloc[:, :len(keys)].astype(str) == keys).all(axis=1)][column].iloc[0]
    assert float(number["value"]) == pytest.approx(float(value))
    return number
