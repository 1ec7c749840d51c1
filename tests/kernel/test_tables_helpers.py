"""The kernel's LaTeX table helpers: rows, escaping, the booktabs float."""

from medrepro.tables import latex_float, latex_row


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
