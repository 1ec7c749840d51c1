"""Table 1: aggregation, Markdown and LaTeX renderings."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from medrepro.errors import DataError
from medrepro.studies.chest.tables import (
    FLOAT_FORMAT,
    PAPER_DATASET_ORDER,
    PAPER_METHOD_ORDER,
    TABLE_COLUMNS,
    display_method,
    format_cell,
    registration_table,
    render_latex,
    render_markdown,
)
from medrepro.report.tables import write_table

METHOD_IDS = ["acregnet", "aeregnet", "ceregnet", "regnet", "simpleelastix", "unregistered"]


def synthetic_per_pair(seed: int = 0, n_pairs: int = 6) -> pd.DataFrame:
    """The long format, every method run once (seed NaN)."""
    rng = np.random.default_rng(seed)
    rows = []
    for dataset, unit in [("Shenzhen", "px"), ("JSRT", "mm"), ("Montgomery", "mm")]:
        for method in reversed(METHOD_IDS):  # deliberately not in paper order
            for i in range(n_pairs):
                rows.append({
                    "dataset": dataset, "method": method, "seed": np.nan, "case": f"m{i}|f{i}",
                    "dsc": rng.uniform(0.8, 0.95), "hd": rng.uniform(10, 40), "assd": rng.uniform(2, 9),
                    "distance_unit": unit,
                })
    return pd.DataFrame(rows)


@pytest.fixture
def table() -> pd.DataFrame:
    return registration_table(synthetic_per_pair(), METHOD_IDS, PAPER_DATASET_ORDER)


def test_columns_order_and_statistics(table):
    per_pair = synthetic_per_pair()
    assert list(table.columns) == TABLE_COLUMNS
    assert list(table.dataset.unique()) == ["JSRT", "Montgomery", "Shenzhen"]
    assert list(table[table.dataset == "JSRT"].method) == METHOD_IDS
    for row in table.itertuples():
        scores = per_pair[(per_pair.dataset == row.dataset) & (per_pair.method == row.method)]
        for metric in ("dsc", "hd", "assd"):
            assert getattr(row, f"{metric}_mean") == pytest.approx(np.mean(scores[metric]))
            assert getattr(row, f"{metric}_sd") == pytest.approx(np.std(scores[metric], ddof=1))
        assert row.n_pairs == 6
    assert set(table[table.dataset == "Shenzhen"].distance_unit) == {"px"}


def test_unlisted_methods_are_appended_not_dropped():
    per_pair = synthetic_per_pair()
    table = registration_table(per_pair, ["regnet", "acregnet"], ["JSRT"])
    jsrt = list(table[table.dataset == "JSRT"].method)
    assert jsrt[:2] == ["regnet", "acregnet"]
    assert sorted(jsrt[2:]) == sorted(set(METHOD_IDS) - {"regnet", "acregnet"})
    assert len(table) == 18


def test_bad_input_raises_data_error():
    per_pair = synthetic_per_pair()
    with pytest.raises(DataError, match="pairs.csv.*distance_unit"):
        registration_table(per_pair.drop(columns="distance_unit"), METHOD_IDS, PAPER_DATASET_ORDER, source="pairs.csv")
    mixed = per_pair.copy()
    mixed.loc[0, "distance_unit"] = "mm"
    with pytest.raises(DataError, match="one distance unit"):
        registration_table(mixed, METHOD_IDS, PAPER_DATASET_ORDER)
    with pytest.raises(DataError, match="more than one row"):
        registration_table(pd.concat([per_pair, per_pair.iloc[:1]]), METHOD_IDS, PAPER_DATASET_ORDER)
    with pytest.raises(DataError, match="pairs.csv.*seed"):
        registration_table(per_pair.drop(columns="seed"), METHOD_IDS, PAPER_DATASET_ORDER, source="pairs.csv")


def test_display_names_and_cells():
    assert [display_method(m) for m in METHOD_IDS] == list(PAPER_METHOD_ORDER)
    assert display_method("AC_RegNet") == "AC-RegNet"
    assert display_method("my-method") == "my-method"
    assert format_cell(0.9431, 0.0204) == "0.943 (0.020)"
    assert format_cell(277.3861, 182.2071) == "277.386 (182.207)"
    assert format_cell(0.5, float("nan")) == "0.500 (n/a)"
    assert format_cell(float("nan"), float("nan")) == "n/a"


def test_markdown_layout(table):
    text = render_markdown(table)
    lines = text.splitlines()
    body = [l for l in lines if l.startswith("| ") and not l.startswith("| Dataset")]
    assert len(body) == 18
    assert lines[0] == "| Dataset | Method | DSC | HD | ASSD | Pairs |"
    assert body[0].startswith("| **JSRT (mm)** | AC-RegNet | ")
    assert body[1].startswith("|  | AE-RegNet | ")
    assert body[5].startswith("|  | Unregistered | ")
    assert body[12].startswith("| **Shenzhen (px)** | AC-RegNet")
    assert all(len(re.findall(r"\d+\.\d{3} \(\d+\.\d{3}\)", l)) == 3 for l in body)
    assert "medpy 0.4.0" in text
    assert "in millimetres for JSRT and Montgomery" in text and "in pixels for Shenzhen" in text


def test_latex_is_well_formed(table):
    text = render_latex(table)
    assert text.count("{") - text.count(r"\{") == text.count("}") - text.count(r"\}")
    assert text.count(r"\begin{tabular}") == 1 and text.count(r"\end{tabular}") == 1
    assert r"\toprule" in text and r"\bottomrule" in text
    assert text.count(r"\midrule") == 3  # one before each dataset block
    tabular = text.split(r"\begin{tabular}")[1].split(r"\end{tabular}")[0]
    rows = [l for l in tabular.splitlines() if l.rstrip().endswith(r"\\")]
    assert len(rows) == 1 + 18
    assert all(row.count("&") == 5 for row in rows)  # six columns
    assert "JSRT (mm) & AC-RegNet & " in text
    assert "medpy 0.4.0" in text


def test_latex_escapes_special_characters():
    per_pair = synthetic_per_pair()
    per_pair["method"] = per_pair["method"].str.replace("regnet", "my_net&co")
    text = render_latex(registration_table(per_pair, [], PAPER_DATASET_ORDER))
    assert r"my\_net\&co" in text
    assert "my_net&co" not in text


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_latex_compiles(table, tmp_path):
    document = "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n" + render_latex(table) + "\\end{document}\n"
    (tmp_path / "t.tex").write_text(document)
    result = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=tmp_path, capture_output=True, timeout=120
    )
    assert result.returncode == 0, result.stdout.decode(errors="replace")[-2000:]


def test_write_registration_table(table, tmp_path):
    write_table(table, tmp_path / "t1.csv", FLOAT_FORMAT,
                [(tmp_path / "t1.md", render_markdown), (tmp_path / "t1.tex", render_latex)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t1.csv", "t1.md", "t1.tex"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "t1.csv"), table)
    assert (tmp_path / "t1.csv").read_text().splitlines()[1] == table.iloc[:1].to_csv(
        index=False, float_format=FLOAT_FORMAT).splitlines()[1]  # six significant digits, as Table 1 is written
    assert (tmp_path / "t1.md").read_text() == render_markdown(table)
    assert (tmp_path / "t1.tex").read_text() == render_latex(table)


def test_seed_replicates_mean_over_seeds_with_both_spreads():
    """Learned methods have one block of pairs per seed; the others run once (seed NaN)."""
    rng = np.random.default_rng(3)
    rows = []
    for method, seeds in (("acregnet", [0, 1, 2]), ("unregistered", [np.nan])):
        for seed in seeds:
            for i in range(5):
                rows.append({"dataset": "JSRT", "method": method, "seed": seed, "case": f"m{i}|f{i}",
                             "dsc": rng.uniform(0.8, 0.95), "hd": rng.uniform(10, 40), "assd": rng.uniform(2, 9),
                             "distance_unit": "mm"})
    per_pair = pd.DataFrame(rows)
    table = registration_table(per_pair, METHOD_IDS, PAPER_DATASET_ORDER).set_index("method")
    learned = per_pair[per_pair.method == "acregnet"]
    for metric in ("dsc", "hd", "assd"):
        per_seed = [learned[learned.seed == s][metric].to_numpy() for s in (0, 1, 2)]
        means = np.array([v.mean() for v in per_seed])
        assert table.loc["acregnet", f"{metric}_mean"] == pytest.approx(means.mean())
        assert table.loc["acregnet", f"{metric}_sd"] == pytest.approx(np.mean([v.std(ddof=1) for v in per_seed]))
        assert table.loc["acregnet", f"{metric}_seed_sd"] == pytest.approx(means.std(ddof=1))
        assert np.isnan(table.loc["unregistered", f"{metric}_seed_sd"])
    assert table.loc["acregnet", "n_seeds"] == 3 and table.loc["acregnet", "n_pairs"] == 5
    assert table.loc["unregistered", "n_seeds"] == 1
    text = render_markdown(table.reset_index()[TABLE_COLUMNS])
    assert re.search(r"\| AC-RegNet \| \d\.\d{3} \(\d\.\d{3}\) \[\d\.\d{3}\] \|", text)
    assert re.search(r"\| Unregistered \| \d\.\d{3} \(\d\.\d{3}\) \|", text)
    assert "trained with 3 seeds" in text
    uneven = per_pair.drop(index=per_pair[(per_pair.method == "acregnet") & (per_pair.seed == 2)].index[:1])
    with pytest.raises(DataError, match="different numbers of test pairs"):
        registration_table(uneven, METHOD_IDS, PAPER_DATASET_ORDER)
