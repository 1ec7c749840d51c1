"""Table 1 of the study: mean (SD) over test pairs of DSC, HD and ASSD, over seed replicates.

Each test pair contributes one value per metric, the mean over its classes
(:func:`medrepro.studies.chest.evaluation.pair_values`, the kernel's long
format with the dataset as group). The learned methods are trained once per
replicate seed (``seed`` NaN for the methods that are not trained). Per
dataset and method the table reports:

* ``<metric>_mean``: the mean over seeds of each seed's mean over the test pairs;
* ``<metric>_sd``: the spread over test pairs, the mean over seeds of each
  seed's sample standard deviation (ddof=1) over the pairs;
* ``<metric>_seed_sd``: the spread between seeds, the sample standard
  deviation of the seeds' means (NaN for a method run once).

NaN per-pair values (every class undefined) are skipped.

The CSV keeps raw method identifiers, numbers with six significant digits;
the Markdown and LaTeX renderings show the paper's names
(:func:`display_method`) in the paper's row order.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import pandas as pd

from medrepro.errors import DataError
from medrepro.report.scores import check_long
from medrepro.studies.chest.evaluation import METRICS
from medrepro.report.tables import format_cell, latex_escape, latex_float, latex_row, order_with_extras, require_columns

# The study's CSV tables (Table 1, the Wilcoxon tests, the claims, Sec. 5.3): six significant digits.
FLOAT_FORMAT = "%.6g"

PAPER_METHOD_ORDER = ("AC-RegNet", "AE-RegNet", "CE-RegNet", "RegNet", "SimpleElastix", "Unregistered")
PAPER_DATASET_ORDER = ("JSRT", "Montgomery", "Shenzhen")
TABLE_COLUMNS = [
    "dataset", "method", "dsc_mean", "dsc_sd", "dsc_seed_sd", "hd_mean", "hd_sd", "hd_seed_sd",
    "assd_mean", "assd_sd", "assd_seed_sd", "n_pairs", "n_seeds", "distance_unit",
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
    """Mean over seeds, SD over test pairs and SD between seeds for every (dataset, method).

    ``per_pair`` is the long format with a ``dataset`` group and a
    ``distance_unit`` column. Rows follow ``datasets_order`` then
    ``methods_order``; datasets or methods missing from the orders are
    appended (sorted) rather than dropped.
    """
    require_columns(per_pair, ("distance_unit",), source)
    check_long(per_pair, METRICS, ("dataset",), source)
    rows = []
    for dataset in order_with_extras(per_pair["dataset"].unique().tolist(), datasets_order):
        block = per_pair[per_pair["dataset"] == dataset]
        unit = _dataset_unit(block, dataset, source)
        for method in order_with_extras(block["method"].unique().tolist(), methods_order):
            scores = block[block["method"] == method]
            by_seed = scores.groupby(scores["seed"].fillna(-1), sort=True)  # -1: the one run of a seedless method
            pairs = by_seed.size()
            if pairs.nunique() != 1:
                raise DataError(source, f"{dataset}/{method}: the seeds have different numbers of test pairs "
                                        f"{pairs.to_dict()}")
            row = {"dataset": dataset, "method": method}
            for metric in METRICS:
                seed_means = by_seed[metric].mean()
                row[f"{metric}_mean"] = float(seed_means.mean())
                row[f"{metric}_sd"] = float(by_seed[metric].std(ddof=1).mean())
                row[f"{metric}_seed_sd"] = float(seed_means.std(ddof=1)) if len(seed_means) > 1 else float("nan")
            row["n_pairs"] = int(pairs.iloc[0])
            row["n_seeds"] = int(len(pairs))
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
        + _seed_sentence(table)
    )


def _seed_sentence(table: pd.DataFrame) -> str:
    n_seeds = int(table["n_seeds"].max()) if len(table) else 1
    if n_seeds < 2:
        return ""
    return (f" Learned methods were trained with {n_seeds} seeds: their mean is over the seeds, the SD in parentheses "
            "the mean of the seeds' SDs over test pairs, and the value in square brackets the SD between the seeds' "
            "means.")


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
        cells = [_cell(record, m) for m in METRICS]
        rows.append((dataset_cell, display_method(record["method"]), cells, int(record["n_pairs"]), first))
    return rows


def _cell(record: dict, metric: str) -> str:
    """``mean (SD over pairs)``, then ``[SD between seeds]`` for a method run with several seeds."""
    text = format_cell(record[f"{metric}_mean"], record[f"{metric}_sd"])
    seed_sd = record[f"{metric}_seed_sd"]
    return f"{text} [{seed_sd:.3f}]" if np.isfinite(seed_sd) else text


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
    body = []
    for dataset_cell, method, cells, n_pairs, first in _body_rows(table):
        if first:
            body.append(r"\midrule")
        body.append(latex_row([latex_escape(dataset_cell), latex_escape(method), *cells, str(n_pairs)]))
    return latex_float("llrrrr", ["Dataset", "Method", "DSC", "HD", "ASSD", "Pairs"], body, table_caption(table), label)
