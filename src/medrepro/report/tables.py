"""Table helpers every study uses: required columns, row order, number formatting, LaTeX escaping, writing."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from medrepro.data.atomic import write_csv, write_text
from medrepro.errors import DataError


def require_columns(frame: pd.DataFrame, columns: Sequence[str], source=None) -> None:
    """Raise DataError naming the source when ``frame`` lacks any of ``columns``."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(source, f"missing column(s) {missing}; found {list(frame.columns)}")


def order_with_extras(present: Sequence[str], order: Sequence[str]) -> list[str]:
    """``order`` restricted to ``present``, then anything unlisted (sorted) so nothing is dropped."""
    listed = [x for x in order if x in set(present)]
    return listed + sorted(set(present) - set(listed))


def format_cell(mean: float, sd: float, decimals: int = 3) -> str:
    """``0.943 (0.020)``; ``n/a`` for a missing mean, ``(n/a)`` for an SD of a single pair."""
    if not np.isfinite(mean):
        return "n/a"
    sd_text = f"{sd:.{decimals}f}" if np.isfinite(sd) else "n/a"
    return f"{mean:.{decimals}f} ({sd_text})"


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
    "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in str(text))


def latex_row(cells: Sequence[str]) -> str:
    """One ``tabular`` row: the cells (already escaped) joined by ``&``, ending in ``\\\\``."""
    return " & ".join(cells) + r" \\"


def latex_float(column_spec: str, header: Sequence[str], body: Sequence[str], caption: str, label: str) -> str:
    """A ``table`` float holding a booktabs ``tabular``; needs only ``\\usepackage{booktabs}``.

    ``header`` cells are escaped here; ``body`` lines (rows from :func:`latex_row`,
    rules such as ``\\midrule``) are written as given; ``caption`` is escaped.
    """
    lines = [
        r"\begin{table}[htbp]",
        r"  \centering",
        f"  \\begin{{tabular}}{{{column_spec}}}",
        r"    \toprule",
        "    " + latex_row([latex_escape(h) for h in header]),
        *("    " + line for line in body),
        r"    \bottomrule",
        r"  \end{tabular}",
        f"  \\caption{{{latex_escape(caption)}}}",
        f"  \\label{{{label}}}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


Rendering = tuple[str | Path | None, Callable[[pd.DataFrame], str]]


def write_table(table: pd.DataFrame, csv_path: str | Path | None, float_format: str | None = None,
                renderings: Sequence[Rendering] = ()) -> None:
    """A table as CSV (``float_format`` as in :func:`medrepro.data.atomic.write_csv`) and as each rendering.

    ``renderings`` pairs a path with the function that renders the table as
    text there (Markdown, LaTeX). Each file is written atomically; a None
    path is skipped.
    """
    if csv_path is not None:
        write_csv(csv_path, table, float_format)
    for path, render in renderings:
        if path is not None:
            write_text(path, render(table))
