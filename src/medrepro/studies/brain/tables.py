"""The paper's Table 1 from the per-case scores, and the Wilcoxon tests between methods.

Per method (:data:`TABLE_COLUMNS`), over the held-out cases, each learned method's case values first averaged over
its seeds: the median and the mean of the per-case median errors (eq. 6), the median and the mean of the per-case
mean errors, the mean and the median robustness (eqs. 7-8), the mean folding percentage, and the mean seconds per
pair on the CPU and, where the run had one, on the GPU (empty otherwise). The paper's Table 1 (the organisers'
scores of 20 validation pairs) sits beside it in the Markdown and LaTeX renderings.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from medrepro.report.scores import SOURCE
from medrepro.report.tables import latex_escape, latex_float, latex_row, write_table

FLOAT_FORMAT = "%.6g"
METHODS = ("unregistered", "ants", "voxelmorph", "wssamnet", "wssamnet_no_attention")
METHOD_NAMES = {"unregistered": "Unregistered", "ants": "ANTs (SyN)", "voxelmorph": "VoxelMorph",
                "wssamnet": "WSSAMNet", "wssamnet_no_attention": "WSSAMNet without attention"}
TABLE_COLUMNS = ["method", "median_of_median_ae", "mean_of_median_ae", "median_of_mean_ae", "mean_of_mean_ae",
                 "mean_robustness", "median_robustness", "folding_pct_mean", "runtime_cpu_s", "runtime_gpu_s"]
CASE_METRICS = ["median_error_mm", "mean_error_mm", "robustness", "folding_pct", "runtime_cpu_s", "runtime_gpu_s"]
ROW_NAMES = {"median_of_median_ae": "Median of median AE", "mean_of_median_ae": "Mean of median AE",
             "median_of_mean_ae": "Median of mean AE", "mean_of_mean_ae": "Mean of mean AE",
             "mean_robustness": "Mean robustness", "median_robustness": "Median robustness",
             "folding_pct_mean": "Folding (% voxels, mean)", "runtime_cpu_s": "Seconds per pair, CPU",
             "runtime_gpu_s": "Seconds per pair, GPU"}
#: Table 1 of the paper (ANTs, VoxelMorph, WSSAMNet); run times there are CPU minutes (0.83 / 0.18 / 0.18), given
#: here in seconds, and the GPU time "less than 6.98 s" for WSSAMNet alone.
PAPER = {
    "ants": {"median_of_median_ae": 5.50, "mean_of_median_ae": 7.88, "median_of_mean_ae": 5.75,
             "mean_of_mean_ae": 8.55, "mean_robustness": 0.13, "median_robustness": 0.15, "runtime_cpu_s": 49.8},
    "voxelmorph": {"median_of_median_ae": 6.25, "mean_of_median_ae": 9.10, "median_of_mean_ae": 6.86,
                   "mean_of_mean_ae": 9.29, "mean_robustness": 0.31, "median_robustness": 0.23,
                   "runtime_cpu_s": 10.8},
    "wssamnet": {"median_of_median_ae": 5.00, "mean_of_median_ae": 8.37, "median_of_mean_ae": 6.68,
                 "mean_of_mean_ae": 9.09, "mean_robustness": 0.32, "median_robustness": 0.28,
                 "runtime_cpu_s": 10.8, "runtime_gpu_s": 6.98},
}


def case_means(cases: pd.DataFrame) -> pd.DataFrame:
    """Each method's per-case values averaged over its seeds (a method run once keeps its one value)."""
    return cases.groupby(["method", "case"], sort=False)[CASE_METRICS].mean().reset_index()


def registration_table(cases: pd.DataFrame) -> pd.DataFrame:
    """Table 1's rows, one per method in :data:`METHODS` order."""
    means = case_means(cases)
    rows = []
    present = [m for m in METHODS if m in set(means["method"])]
    for method in present + sorted(set(means["method"]) - set(METHODS)):
        m = means[means["method"] == method]
        rows.append({
            "method": method,
            "median_of_median_ae": m["median_error_mm"].median(), "mean_of_median_ae": m["median_error_mm"].mean(),
            "median_of_mean_ae": m["mean_error_mm"].median(), "mean_of_mean_ae": m["mean_error_mm"].mean(),
            "mean_robustness": m["robustness"].mean(), "median_robustness": m["robustness"].median(),
            "folding_pct_mean": m["folding_pct"].mean(), "runtime_cpu_s": m["runtime_cpu_s"].mean(),
            "runtime_gpu_s": m["runtime_gpu_s"].mean() if m["runtime_gpu_s"].notna().any() else np.nan})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _cell(value, decimals: int = 2) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{decimals}f}"


def _paper(method: str, column: str) -> str:
    value = PAPER.get(method, {}).get(column)
    return "" if value is None else f" ({value:.2f})"


def registration_markdown(table: pd.DataFrame) -> str:
    """Laid out as the paper's Table 1: a row per metric, a column per method, the paper's values in brackets."""
    methods = list(table["method"])
    header = ["Evaluation metric"] + [METHOD_NAMES.get(m, m) for m in methods]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * len(methods)]
    by_method = table.set_index("method")
    for column, name in ROW_NAMES.items():
        cells = [f"{_cell(by_method.at[m, column])}{_paper(m, column)}" for m in methods]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines) + ("\n\nErrors in mm on the held-out training cases, learned methods averaged over their "
                               "seeds. The paper's Table 1 (the organisers' scores of 20 validation pairs) in "
                               "brackets; its run times (CPU minutes) converted to seconds.\n")


def registration_latex(table: pd.DataFrame) -> str:
    methods = list(table["method"])
    by_method = table.set_index("method")
    body = [latex_row([latex_escape(name)] + [f"{_cell(by_method.at[m, column])}{_paper(m, column)}"
                                              for m in methods])
            for column, name in ROW_NAMES.items()]
    caption = ("Landmark errors (mm), robustness, folding and seconds per pair on the held-out cases (learned "
               "methods: mean over seeds); the paper's Table 1 in brackets.")
    return latex_float("l" + "r" * len(methods), ["Metric"] + [latex_escape(METHOD_NAMES.get(m, m)) for m in methods],
                       body, caption, "tab:brain-registration")


def write_registration_table(table: pd.DataFrame, csv_path, markdown_path, latex_path) -> None:
    write_table(table, csv_path, FLOAT_FORMAT, [(markdown_path, registration_markdown),
                                                (latex_path, registration_latex)])


def long_values(cases: pd.DataFrame) -> pd.DataFrame:
    """The kernel's long format of the per-case scores: method, seed, case, the metrics, source."""
    return cases.reindex(columns=["method", "seed", "case", *CASE_METRICS, SOURCE])
