"""The kernel's table helpers: LaTeX rows, escaping, the booktabs float, and the one table writer."""

import pandas as pd

from medrepro.data.atomic import write_csv
from medrepro.report.tables import latex_float, latex_row, write_table


def test_latex_row_joins_cells_and_ends_the_row():
    assert latex_row(["a", "b", "1.0"]) == r"a & b & 1.0 \\"


def test_latex_float_escapes_header_and_caption_and_keeps_body_lines():
    text = latex_float("lr", ["Method", "Rate (%)"], [r"\midrule", latex_row(["x_1", "5"])], "50% of pairs", "tab:x")
    lines = text.splitlines()
    assert lines[:5] == [r"\begin{table}[htbp]", r"  \centering", r"  \begin{tabular}{lr}", r"    \toprule",
                         r"    Method & Rate (\%) \\"]
    assert lines[5:7] == [r"    \midrule", r"    x_1 & 5 \\"]  # body lines are written as given
    assert lines[7:] == [r"    \bottomrule", r"  \end{tabular}", r"  \caption{50\% of pairs}", r"  \label{tab:x}",
                         r"\end{table}"]
    assert text.endswith("\n")


def test_write_csv_keeps_every_digit_unless_the_study_names_a_format(tmp_path):
    frame = pd.DataFrame({"name": ["a"], "x": [1 / 3], "n": [7]})
    write_csv(tmp_path / "full.csv", frame)
    write_csv(tmp_path / "short.csv", frame, "%.6g")
    assert (tmp_path / "full.csv").read_text() == "name,x,n\na,0.3333333333333333,7\n"  # no index column
    assert (tmp_path / "short.csv").read_text() == "name,x,n\na,0.333333,7\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_write_table_writes_the_csv_and_each_rendering_and_skips_none_paths(tmp_path):
    frame = pd.DataFrame({"x": [0.5]})
    write_table(frame, tmp_path / "t.csv", "%.3f", [(tmp_path / "t.md", lambda t: f"{len(t)} row\n"), (None, str)])
    assert (tmp_path / "t.csv").read_text() == "x\n0.500\n" and (tmp_path / "t.md").read_text() == "1 row\n"
    write_table(frame, None, renderings=[(tmp_path / "only.tex", lambda t: "tex\n")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["only.tex", "t.csv", "t.md"]
