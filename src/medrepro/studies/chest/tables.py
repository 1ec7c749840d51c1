"""Table 1 of the study: mean (SD) over test pairs of DSC, HD and ASSD.

Each test pair contributes one value per metric, the mean over its classes
(:func:`medrepro.studies.chest.evaluation.pair_means`); the table reports the mean and
the sample standard deviation (ddof=1) of those values over the pairs, per
dataset and method. NaN per-pair values (every class undefined) are skipped.

The CSV keeps raw method identifiers; the Markdown and LaTeX renderings show
the paper's names (:func:`display_method`) in the paper's row order.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import pandas as pd

from medrepro.atomic import atomic_path, write_text
from medrepro.errors import DataError
from medrepro.studies.chest.evaluation import METRICS
from medrepro.tables import format_cell, latex_escape, order_with_extras, require_columns

PAPER_METHOD_ORDER = ("AC-RegNet", "AE-RegNet", "CE-RegNet", "RegNet", "SimpleElastix", "Unregistered")
PAPER_DATASET_ORDER = ("JSRT", "Montgomery", "Shenzhen")
TABLE_COLUMNS = [
    "dataset", "method", "dsc_mean", "dsc_sd", "hd_mean", "hd_sd", "assd_mean", "assd_sd", "n_pairs", "distance_unit",
]
METRIC_LABELS = {"dsc": "DSC", "hd": "HD", "assd": "ASSD"}
UNIT_WORDS = {"mm": "millimetres", "px": "pixels"}

_METHOD_NAMES = {
    "acregnet": "AC-RegNet", "aeregnet": "AE-RegNet", "ceregnet": "CE-RegNet", "regnet": "RegNet",
    "simpleelastix": "SimpleElastix", "elastix": "SimpleElastix",
    "unregistered": "Unregistered", "identity": "Unregistered", "none": "Unregistered",
}


def display_method(method: str) -> str:
    """The paper's name for a method identifier (``ac_regnet``, ``acregnet`` -> ``AC-RegNet``)."""
    return _METHOD_NAMES.get(re.sub(r"[^a-z0-9]", "", str(method).lower()), str(method))


def _dataset_unit(block: pd.DataFrame, dataset: str, source) -> str:
    units = block["distance_unit"].dropna().unique().tolist()
    if len(units) != 1:
        raise DataError(source, f"dataset {dataset!r} must have one distance unit, found {units}")
    return str(units[0])


def registration_table(
    per_pair: pd.DataFrame,
    methods_order: Sequence[str],
    datasets_order: Sequence[str],
    source=None,
) -> pd.DataFrame:
    """Mean and sample SD of the per-pair scores for every (dataset, method).

    Rows follow ``datasets_order`` then ``methods_order``; datasets or methods
    missing from the orders are appended (sorted) rather than dropped.
    """
    require_columns(per_pair, ("dataset", "method", "moving", "fixed", *METRICS, "distance_unit"), source)
    keys = ["dataset", "method", "moving", "fixed"]
    if per_pair.duplicated(keys).any():
        first = per_pair.loc[per_pair.duplicated(keys), keys].iloc[0].tolist()
        raise DataError(source, f"more than one row for (dataset, method, moving, fixed) = {first}")
    rows = []
    for dataset in order_with_extras(per_pair["dataset"].unique().tolist(), datasets_order):
        block = per_pair[per_pair["dataset"] == dataset]
        unit = _dataset_unit(block, dataset, source)
        for method in order_with_extras(block["method"].unique().tolist(), methods_order):
            scores = block[block["method"] == method]
            row = {"dataset": dataset, "method": method}
            for metric in METRICS:
                values = scores[metric].astype(float)
                row[f"{metric}_mean"] = float(values.mean())
                row[f"{metric}_sd"] = float(values.std(ddof=1))
            row["n_pairs"] = int(len(scores))
            row["distance_unit"] = unit
            rows.append(row)
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def table_caption(table: pd.DataFrame) -> str:
    """Caption stating what is averaged, the distance unit per dataset and the ASSD definition."""
    per_unit: dict[str, list[str]] = {}
    for dataset, unit in table.drop_duplicates("dataset")[["dataset", "distance_unit"]].itertuples(index=False):
        per_unit.setdefault(unit, []).append(str(dataset))
    unit_text = "; ".join(
        f"in {UNIT_WORDS.get(unit, unit)} for {_join_names(datasets)}" for unit, datasets in per_unit.items()
    )
    return (
        "Mean (standard deviation) over test pairs of the Dice similarity coefficient (DSC), "
        "Hausdorff distance (HD) and average symmetric surface distance (ASSD), each first averaged "
        "over the classes of a pair (left/right lung, and heart where annotated). "
        f"HD and ASSD are {unit_text}. "
        "ASSD follows the medpy 0.4.0 definition: the mean of the two directed average surface distances."
    )


def _join_names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _body_rows(table: pd.DataFrame) -> list[tuple[str, str, list[str], int, bool]]:
    """(dataset cell, method cell, metric cells, n_pairs, starts a block) for every table row."""
    rows = []
    previous = None
    for record in table.to_dict("records"):
        first = record["dataset"] != previous
        previous = record["dataset"]
        dataset_cell = f"{record['dataset']} ({record['distance_unit']})" if first else ""
        cells = [format_cell(record[f"{m}_mean"], record[f"{m}_sd"]) for m in METRICS]
        rows.append((dataset_cell, display_method(record["method"]), cells, int(record["n_pairs"]), first))
    return rows


def render_markdown(table: pd.DataFrame, title: str = "Table 1") -> str:
    """GitHub-flavoured Markdown table in the paper's layout, caption below."""
    lines = [
        "| Dataset | Method | DSC | HD | ASSD | Pairs |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for dataset_cell, method, cells, n_pairs, first in _body_rows(table):
        dataset_cell = f"**{dataset_cell}**" if dataset_cell else ""
        lines.append(f"| {dataset_cell} | {method} | {' | '.join(cells)} | {n_pairs} |")
    return "\n".join(lines) + f"\n\n{title}: {table_caption(table)}\n"


def render_latex(table: pd.DataFrame, label: str = "tab:registration") -> str:
    """A ``table`` float with a booktabs ``tabular``; needs only ``\\usepackage{booktabs}``."""
    lines = [
        r"\begin{table}[htbp]",
        r"  \centering",
        r"  \begin{tabular}{llrrrr}",
        r"    \toprule",
        r"    Dataset & Method & DSC & HD & ASSD & Pairs \\",
    ]
    for dataset_cell, method, cells, n_pairs, first in _body_rows(table):
        if first:
            lines.append(r"    \midrule")
        fields = [latex_escape(dataset_cell), latex_escape(method), *cells, str(n_pairs)]
        lines.append("    " + " & ".join(fields) + r" \\")
    lines += [
        r"    \bottomrule",
        r"  \end{tabular}",
        f"  \\caption{{{latex_escape(table_caption(table))}}}",
        f"  \\label{{{label}}}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def write_registration_table(
    table: pd.DataFrame,
    csv_path: str | Path | None = None,
    markdown_path: str | Path | None = None,
    latex_path: str | Path | None = None,
) -> None:
    """Write the CSV and the two renderings, each atomically; skipped paths are None."""
    if csv_path is not None:
        with atomic_path(csv_path) as tmp:
            table.to_csv(tmp, index=False)
    if markdown_path is not None:
        write_text(markdown_path, render_markdown(table))
    if latex_path is not None:
        write_text(latex_path, render_latex(table))
