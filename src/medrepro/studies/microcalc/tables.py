"""The study's tables: the per-class patch errors laid out like the paper's Table 1, and the whole-mammogram scores
(beyond the paper), each with the paper's numbers beside ours where it gives them.

Errors and accuracies are percentages over the test patches, averaged over the replicate seeds. ``overall_accuracy``
is the accuracy over every test patch, as the paper's (its test set, like ours by default, is half C1 and a sixth
each of C2, C3 and C4: the paper's overall accuracies equal 0.5 acc(C1) + (acc(C2) + acc(C3) + acc(C4)) / 6 in all
four rows); ``equal_weight_accuracy`` weighs the four classes alike.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from medrepro.report.tables import latex_escape, latex_float, latex_row, write_table
from medrepro.studies.microcalc.patches import CLASSES
from medrepro.studies.microcalc.scoring import summarise_variants

FLOAT_FORMAT = "%.6g"
NETWORK_ORDER = ("detector", "segmentator")
CONVOLUTION_ORDER = ("valid", "same")  # the paper's row order
NETWORK_NAMES = {"detector": "Detector", "segmentator": "Segmentator"}
ERROR_COLUMNS = [f"c{c}_error" for c in CLASSES]
COUNT_COLUMNS = [f"n_c{c}" for c in CLASSES]
PATCH_COLUMNS = ["network", "convolution", *ERROR_COLUMNS, "overall_accuracy", *COUNT_COLUMNS]
# Table 1 of the paper: error per class (%) and overall accuracy (%), per network and convolution.
PAPER_PATCH_ERRORS = {
    ("detector", "valid"): (0.19, 1.22, 20.28, 1.69, 96.04),
    ("detector", "same"): (0.09, 0.47, 7.84, 2.09, 98.22),
    ("segmentator", "valid"): (1.85, 15.32, 0.34, 0.55, 96.37),
    ("segmentator", "same"): (1.57, 10.03, 0.24, 0.20, 97.47),
}
#: The paper's time per mammogram with its implementation (a GTX 970 GPU).
PAPER_SECONDS_PER_MAMMOGRAM = 20.0


def _row_order(table: pd.DataFrame) -> pd.DataFrame:
    rank = {(n, c): i for i, (n, c) in enumerate((n, c) for n in NETWORK_ORDER for c in CONVOLUTION_ORDER)}
    return table.assign(_rank=[rank.get((n, c), len(rank)) for n, c in zip(table["network"], table["convolution"])]
                        ).sort_values(["_rank", "network", "convolution"]).drop(columns="_rank").reset_index(drop=True)


def _seed_row(group: pd.DataFrame) -> dict:
    """Errors per class, overall and equal-weight accuracy of one seed's predictions (percent)."""
    row = {}
    for c in CLASSES:
        correct = group.loc[group["class"] == c, "correct"]
        row[f"c{c}_error"] = 100.0 * (1.0 - correct.mean()) if len(correct) else np.nan
        row[f"n_c{c}"] = int(len(correct))
    row["overall_accuracy"] = 100.0 * group["correct"].mean()
    row["equal_weight_accuracy"] = 100.0 - np.nanmean([row[c] for c in ERROR_COLUMNS])
    return row


def patch_errors_table(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per (network, convolution): seed means of the per-class errors and accuracies, the spread of the
    overall accuracy over seeds, the test patches per class, and the paper's Table 1 values."""
    rows = []
    for (network, convolution), group in predictions.groupby(["network", "convolution"], sort=False):
        per_seed = pd.DataFrame([_seed_row(g) for _, g in group.groupby("seed")])
        row = {"network": network, "convolution": convolution}
        for column in (*ERROR_COLUMNS, "overall_accuracy", "equal_weight_accuracy"):
            row[column] = float(per_seed[column].mean())
        for column in COUNT_COLUMNS:
            row[column] = int(per_seed[column].iloc[0])
        row["overall_accuracy_seed_sd"] = float(per_seed["overall_accuracy"].std()) if len(per_seed) > 1 else np.nan
        row["n_seeds"] = int(len(per_seed))
        paper = PAPER_PATCH_ERRORS.get((network, convolution), (np.nan,) * 5)
        row.update({f"paper_{k}": v for k, v in zip((*ERROR_COLUMNS, "overall_accuracy"), paper)})
        rows.append(row)
    table = _row_order(pd.DataFrame(rows))
    extra = ["equal_weight_accuracy", "overall_accuracy_seed_sd", "n_seeds"]
    return table[[*PATCH_COLUMNS, *extra, *[c for c in table if c.startswith("paper_")]]]


def images_table(scores: pd.DataFrame) -> pd.DataFrame:
    """The whole-mammogram model per convolution variant on the test images: per seed the scores of
    :func:`medrepro.studies.microcalc.scoring.summarise_variants`, then their means over seeds, with the seconds
    per mammogram and the paper's."""
    per_seed = []
    for seed, group in scores.groupby("seed"):
        summary = summarise_variants(group, by="convolution")
        seconds = group.groupby("convolution", sort=False)["seconds"].mean()
        per_seed.append(summary.assign(seed=seed, seconds_per_mammogram=summary["convolution"].map(seconds)))
    frame = pd.concat(per_seed, ignore_index=True)
    numeric = [c for c in frame.columns if c not in ("convolution", "seed")]
    table = frame.groupby("convolution", sort=False)[numeric].mean().reset_index()
    table["n_seeds"] = frame.groupby("convolution", sort=False)["seed"].nunique().to_numpy()
    table["paper_seconds_per_mammogram"] = PAPER_SECONDS_PER_MAMMOGRAM
    order = {c: i for i, c in enumerate(CONVOLUTION_ORDER)}
    return table.sort_values("convolution", key=lambda c: c.map(order)).reset_index(drop=True)


def _cell(value: float, decimals: int = 2) -> str:
    return "" if not np.isfinite(value) else f"{value:.{decimals}f}"


def patch_errors_markdown(table: pd.DataFrame) -> str:
    """The paper's Table 1 layout: per network and convolution the error per class and the overall accuracy, ours
    (seed mean) with the paper's in brackets."""
    header = ["Network", "Convolution", "C1 error %", "C2 error %", "C3 error %", "C4 error %", "Overall accuracy %",
              "Equal-weight accuracy %"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.to_dict("records"):
        cells = [NETWORK_NAMES.get(row["network"], row["network"]), row["convolution"]]
        for column in (*ERROR_COLUMNS, "overall_accuracy"):
            cells.append(f"{_cell(row[column])} ({_cell(row[f'paper_{column}'])})")
        cells.append(_cell(row["equal_weight_accuracy"]))
        lines.append("| " + " | ".join(cells) + " |")
    counts = ", ".join(f"C{c}: {int(table[f'n_c{c}'].iloc[0])}" for c in CLASSES) if len(table) else ""
    return "\n".join(lines) + f"\n\nTest patches per class: {counts}. The paper's values in brackets.\n"


def patch_errors_latex(table: pd.DataFrame) -> str:
    """:func:`patch_errors_markdown` as a booktabs table."""
    header = ["Network", "Conv.", "C1", "C2", "C3", "C4", "Accuracy"]
    body = []
    for row in table.to_dict("records"):
        cells = [latex_escape(NETWORK_NAMES.get(row["network"], row["network"])), latex_escape(row["convolution"])]
        cells += [f"{_cell(row[c])} ({_cell(row[f'paper_{c}'])})" for c in (*ERROR_COLUMNS, "overall_accuracy")]
        body.append(latex_row(cells))
    caption = ("Error per patch class and overall accuracy (%) on the test patches, mean over seeds; the paper's "
               "Table 1 in brackets.")
    return latex_float("llrrrrr", header, body, caption, "tab:microcalc-patch-errors")


IMAGE_HEADER = {"convolution": "Convolution", "dice": "Dice", "sensitivity": "Calcification sensitivity",
                "false_positives_per_image": "FP / image", "cluster_sensitivity": "Cluster sensitivity",
                "false_positive_clusters_per_image": "FP clusters / image",
                "seconds_per_mammogram": "Seconds / mammogram"}


def images_markdown(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(IMAGE_HEADER.values()) + " |", "|" + "---|" * len(IMAGE_HEADER)]
    for row in table.to_dict("records"):
        cells = [str(row["convolution"])] + [_cell(row[c], 3) for c in list(IMAGE_HEADER)[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + (f"\n\nThe paper: about {PAPER_SECONDS_PER_MAMMOGRAM:g} s per mammogram on a GTX 970 "
                               "GPU; it reports no image-level scores.\n")


def images_latex(table: pd.DataFrame) -> str:
    body = [latex_row([latex_escape(row["convolution"])] + [_cell(row[c], 3) for c in list(IMAGE_HEADER)[1:]])
            for row in table.to_dict("records")]
    caption = ("Whole-mammogram segmentation of the test images (mean over seeds): pixel Dice, calcification "
               "sensitivity, false positives per image, cluster detection and time per mammogram.")
    return latex_float("l" + "r" * (len(IMAGE_HEADER) - 1), list(IMAGE_HEADER.values()), body, caption,
                       "tab:microcalc-images")


def write_study_table(table: pd.DataFrame, job, markdown, latex) -> None:
    """A table as CSV, Markdown and LaTeX (the rule's outputs ``csv``, ``markdown``, ``latex``)."""
    write_table(table, job.output.csv, FLOAT_FORMAT,
                [(job.output.markdown, markdown), (job.output.latex, latex)])
