"""The study's registration table and paired tests between its variants.

Input: one per-pair frame per method (``eval/{method}.csv``, the columns of
:data:`~medrepro.studies.mammo_registration.evaluation.EVAL_COLUMNS`), with an
optional ``seed`` column for the learned variants (NaN or absent for methods
run once), checked and gathered by :func:`long_scores` into the kernel's long
format (:mod:`medrepro.report.scores`: a case is a pair). Per method the table reports
each statistic over the test pairs, computed per seed and then averaged over
the seeds:

* ``overlap_rate``: share of pairs whose boxes overlap (the paper: 66.7%);
* ``giou_loss_mean``/``_median``/``_sd`` (sample SD, ddof=1, over pairs);
* ``iou_mean``, ``centre_distance_median_px``, ``masked_mse_mean``;
* ``n_seeds`` and ``overlap_rate_seed_sd`` (sample SD of the seeds' overlap
  rates; NaN for a method run once).

The Wilcoxon tests pair the methods on the pair name; a method with several
seeds contributes each pair's mean over its seeds. The CSVs keep every digit.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from medrepro.errors import DataError
from medrepro.report.scores import SOURCE, check_long
from medrepro.report.stats import RESULT_COLUMNS, paired_wilcoxon
from medrepro.studies.mammo_registration.evaluation import SCORE_COLUMNS, check_scores
from medrepro.report.tables import latex_escape, latex_float, latex_row, order_with_extras

PAPER_OVERLAP_RATE = 0.667
PAPER_METHOD = "masked_mse_giou"
METHOD_ORDER = ("unregistered", "prior", "elastix", "mse", "masked_mse", "masked_mse_giou")
TABLE_COLUMNS = [
    "method", "n_pairs", "overlap_rate", "giou_loss_mean", "giou_loss_median", "giou_loss_sd", "iou_mean",
    "centre_distance_median_px", "masked_mse_mean", "n_seeds", "overlap_rate_seed_sd",
]
WILCOXON_METRICS = ("giou_loss", "centre_distance_px")
WILCOXON_COLUMNS = RESULT_COLUMNS

_METHOD_NAMES = {
    "unregistered": "Unregistered", "identity": "Unregistered", "prior": "45-degree prior",
    "elastix": "elastix affine", "mse": "MSE", "maskedmse": "Masked MSE", "maskedmsegiou": "Masked MSE + GIoU",
}
# Per-seed statistics: (table column, per-pair column, reducer over the pairs).
_STATISTICS = (
    ("overlap_rate", "overlap", lambda s: s.mean()),
    ("giou_loss_mean", "giou_loss", lambda s: s.mean()),
    ("giou_loss_median", "giou_loss", lambda s: s.median()),
    ("giou_loss_sd", "giou_loss", lambda s: s.std(ddof=1)),
    ("iou_mean", "iou", lambda s: s.mean()),
    ("centre_distance_median_px", "centre_distance_px", lambda s: s.median()),
    ("masked_mse_mean", "masked_mse", lambda s: s.mean()),
)


def display_method(method: str) -> str:
    """Readable name of a method identifier (``masked_mse_giou`` -> ``Masked MSE + GIoU``)."""
    return _METHOD_NAMES.get(re.sub(r"[^a-z0-9]", "", str(method).lower()), str(method))


def _source(sources: Mapping[str, object] | None, method: str):
    """The file a method's frame came from, for error messages; its name when no file is known."""
    return (sources or {}).get(method) or f"per-pair scores of method {method!r}"


def long_scores(per_pair_by_method: Mapping[str, pd.DataFrame],
                sources: Mapping[str, object] | None = None) -> pd.DataFrame:
    """Per-pair frames by method, each checked, as the long format: method, seed, case (the pair), the scores.

    ``sources`` maps a method to the file its frame was read from: it becomes
    each row's ``source`` and is named in any ``DataError`` (missing column,
    repeated pair, non-finite score, empty frame).
    """
    if not per_pair_by_method:
        raise DataError(None, "no method to tabulate: pass at least one per-pair frame")
    frames = []
    for method, frame in per_pair_by_method.items():
        source = _source(sources, method)
        check_scores(frame, source)
        if len(frame) == 0:
            raise DataError(source, "has no test pair")
        seed = frame["seed"] if "seed" in frame.columns else float("nan")
        frames.append(pd.DataFrame({"method": method, "seed": seed, "case": frame["pair"].astype(str),
                                    **{column: frame[column].astype(float) for column in SCORE_COLUMNS},
                                    SOURCE: str(source)}))
    return pd.concat(frames, ignore_index=True)


def _by_seed(frame: pd.DataFrame, source):
    """The frame grouped by seed (-1 for a method run once), every seed with the same pairs."""
    seeds = frame["seed"].fillna(-1)
    pair_sets = frame.groupby(seeds, sort=True)["case"].apply(frozenset)
    if pair_sets.nunique() != 1:
        sizes = {seed: len(p) for seed, p in pair_sets.items()}
        raise DataError(source, f"the seeds were evaluated on different test pairs (pairs per seed: {sizes})")
    return frame.groupby(seeds, sort=True)


def _method_row(method: str, frame: pd.DataFrame) -> dict:
    by_seed = _by_seed(frame, frame[SOURCE].iloc[0] if SOURCE in frame else _source(None, method))
    row = {"method": method, "n_pairs": int(by_seed.size().iloc[0])}
    seed_overlap_rates = None
    for column, values, reducer in _STATISTICS:
        per_seed = by_seed[values].apply(lambda s: float(reducer(s.astype(np.float64))))
        row[column] = float(per_seed.mean())
        if column == "overlap_rate":
            seed_overlap_rates = per_seed
    row["n_seeds"] = int(by_seed.ngroups)
    row["overlap_rate_seed_sd"] = float(seed_overlap_rates.std(ddof=1)) if by_seed.ngroups > 1 else float("nan")
    return row


def registration_table(scores: pd.DataFrame, methods_order: Sequence[str] = METHOD_ORDER) -> pd.DataFrame:
    """One row per method (:data:`TABLE_COLUMNS`) in ``methods_order``, unlisted methods appended (sorted).

    ``scores`` is :func:`long_scores`' frame; seeds of a method evaluated on
    different pairs are a ``DataError`` naming the method's file.
    """
    check_long(scores, SCORE_COLUMNS)
    methods = order_with_extras(scores["method"].unique().tolist(), methods_order)
    rows = [_method_row(method, scores[scores["method"] == method]) for method in methods]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def wilcoxon_table(
    scores: pd.DataFrame,
    methods_order: Sequence[str] = METHOD_ORDER,
    metrics: Sequence[str] = WILCOXON_METRICS,
) -> pd.DataFrame:
    """Paired two-sided Wilcoxon tests of every two methods on each metric, Bonferroni-corrected per metric.

    Pairs are matched by name; a pair missing from one method is left out of
    that comparison's ``n_pairs``. ``median_diff`` is the median of a - b,
    ``method_a`` the earlier of the two in ``methods_order``.
    """
    order = order_with_extras(scores["method"].unique().tolist(), methods_order)
    return paired_wilcoxon(scores, metrics, methods_order=order)


# --- Renderings --------------------------------------------------------------------------------


def table_caption(table: pd.DataFrame, paper_method: str = PAPER_METHOD) -> str:
    """What each column is, and our overlap rate for the paper's method beside the paper's 66.7%."""
    matches = table[table["method"] == paper_method]
    if len(matches):
        ours = f"ours: {100 * float(matches['overlap_rate'].iloc[0]):.1f}%"
    else:
        ours = f"the method {display_method(paper_method)} is not in this table"
    seeds = int(table["n_seeds"].max()) if len(table) else 1
    seed_text = (f" Learned variants were trained with {seeds} seeds: each statistic is computed per seed and "
                 "averaged over the seeds; the overlap rate's SD between seeds is in square brackets."
                 if seeds > 1 else "")
    return (
        "Registration of the CC view onto the MLO view on the test pairs. Overlap: share of pairs whose "
        "registered CC lesion box and MLO lesion box share a positive area; GIoU loss = 1 - GIoU, mean (SD) and "
        "median over pairs; IoU mean; median distance between the box centres in pixels at the working size; "
        "mean masked MSE over the views' overlap. "
        f"The paper reports an overlap rate of {100 * PAPER_OVERLAP_RATE:.1f}% for "
        f"{display_method(paper_method)} ({ours})." + seed_text
    )


def _cells(record: dict) -> list[str]:
    overlap = f"{100 * record['overlap_rate']:.1f}%"
    if np.isfinite(record["overlap_rate_seed_sd"]):
        overlap += f" [{100 * record['overlap_rate_seed_sd']:.1f}]"
    sd = record["giou_loss_sd"]
    giou = f"{record['giou_loss_mean']:.3f} ({sd:.3f})" if np.isfinite(sd) else f"{record['giou_loss_mean']:.3f} (n/a)"
    return [
        overlap, giou, f"{record['giou_loss_median']:.3f}", f"{record['iou_mean']:.3f}",
        f"{record['centre_distance_median_px']:.1f}", f"{record['masked_mse_mean']:.4g}", str(int(record["n_pairs"])),
    ]


_HEADER = ["Method", "Overlap", "GIoU loss", "GIoU loss median", "IoU", "Centre distance (px)", "Masked MSE",
           "Pairs"]


def render_markdown(table: pd.DataFrame, title: str = "Table", paper_method: str = PAPER_METHOD) -> str:
    """GitHub-flavoured Markdown table, caption below."""
    lines = ["| " + " | ".join(_HEADER) + " |", "|---|" + "---:|" * (len(_HEADER) - 1)]
    for record in table.to_dict("records"):
        lines.append(f"| {display_method(record['method'])} | " + " | ".join(_cells(record)) + " |")
    return "\n".join(lines) + f"\n\n{title}: {table_caption(table, paper_method)}\n"


def render_latex(table: pd.DataFrame, label: str = "tab:mammo_registration",
                 paper_method: str = PAPER_METHOD) -> str:
    """A ``table`` float with a booktabs ``tabular``; needs only ``\\usepackage{booktabs}``."""
    body = [r"\midrule"]
    for record in table.to_dict("records"):
        fields = [display_method(record["method"]), *_cells(record)]
        body.append(latex_row([latex_escape(f) for f in fields]))
    return latex_float("l" + "r" * (len(_HEADER) - 1), _HEADER, body, table_caption(table, paper_method), label)
