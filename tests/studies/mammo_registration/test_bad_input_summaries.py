"""The CBIS-DDSM stand-in that the study's bad inputs (bad_inputs.py) damage, and pairs.json of the case that is
not an error (a CC lesion without its MLO partner)."""

import json
from pathlib import Path
from typing import Callable

import pytest

from support.bad_inputs import Stock, run_step, study_module

cases = study_module("mammo_registration")


@pytest.fixture(scope="module")
def stock(tmp_path_factory) -> Stock:
    raw = tmp_path_factory.mktemp("stock") / "raw"
    cases.make_stock(raw)
    return Stock(raw=raw)


def _mammo_summary(damage: Callable[[Path], None], case: Path, stock: Stock) -> dict:
    """pairs.json of the prepare step on a damaged copy of the CBIS-DDSM stand-in (the step must succeed)."""
    run = cases.mammo_prepare(damage)(case, stock)
    outcome = run_step(case, run, "ERROR")
    assert outcome.exit_code == 0, outcome.output[-3000:]
    return json.loads(Path(run.output["summary"]).read_text())


def test_mammo_stand_in_pairs_fill_every_split(stock, tmp_path):
    """The bad inputs damage a copy that, undamaged, prepares into training, validation and test pairs."""
    summary = _mammo_summary(lambda raw: None, tmp_path, stock)
    assert min(summary["train_pairs"], summary["val_pairs"], summary["test_pairs"]) >= 1, summary
    assert summary["unpaired_cc"] == summary["unpaired_mlo"] == 0 and summary["excluded"] == [], summary


def test_mammo_cc_without_mlo_partner_is_counted_in_the_summary(stock, tmp_path):
    complete = _mammo_summary(lambda raw: None, tmp_path / "complete", stock)
    damaged = _mammo_summary(cases.one_cc_without_its_mlo, tmp_path / "damaged", stock)
    assert damaged["unpaired_cc"] == 1 and damaged["unpaired_mlo"] == 0, damaged
    assert damaged["pairs"] == complete["pairs"] - 1 and damaged["test_pairs"] == complete["test_pairs"] - 1
    assert damaged["test_pairs"] >= 1, damaged
