"""The study's tables: Table 1 (splits), Table 2 (classification), Table 3 (heatmap MSE) and the saliency's
localisation, each with the paper's numbers beside ours where the paper gives them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medrepro.report.tables import write_table
from medrepro.studies.mammo_tissue.claims import BASELINE, LOCAL
from medrepro.studies.mammo_tissue.evaluation import classification_row

FLOAT_FORMAT = "%.6g"
STAGES = {"train": "training", "val": "validation", "test": "testing"}
# Table 1 of the paper: tissue patches and full CC mammograms, findings positive / negative.
PAPER_SPLITS = {"training": (3038, 311452, 1432, 1984), "validation": (32, 32, 10, 10),
                "testing": (256, 256, 100, 100)}
# Table 2: TP, FP, TN, FN, total error (percent of the 512 test patches).
PAPER_CLASSIFICATION = {"x0.5": (47.7, 9.0, 41.0, 2.3, 11.3), "x0.33": (29.7, 3.9, 46.0, 20.3, 24.2),
                        "x0.25": (33.6, 6.3, 43.8, 16.4, 22.7)}
# Table 3: MSE at the paper's (unstated) scale.
PAPER_MSE = {(BASELINE, "train"): 0.12, (LOCAL, "train"): 2.25, (BASELINE, "val"): 6.48, (LOCAL, "val"): 6.04}
CLASSIFICATION_COLUMNS = ["magnification", "tp", "fp", "tn", "fn", "total_error", "auc", "auc_ci_low",
                          "auc_ci_high", "n_test"]


def splits_table(samples: pd.DataFrame, mammograms: pd.DataFrame) -> pd.DataFrame:
    """Table 1: per stage, tissue patches and full CC mammograms with findings present / absent, counted from the
    samples and mammograms the run used, and the paper's counts."""
    rows = []
    for split, stage in STAGES.items():
        patches = samples[samples["split"] == split]["label"]
        full = mammograms[mammograms["split"] == split]["label"]
        paper = PAPER_SPLITS[stage]
        rows.append({"stage": stage, "patches_positive": int((patches == 1).sum()),
                     "patches_negative": int((patches == 0).sum()), "mammograms_positive": int((full == 1).sum()),
                     "mammograms_negative": int((full == 0).sum()), "paper_patches_positive": paper[0],
                     "paper_patches_negative": paper[1], "paper_mammograms_positive": paper[2],
                     "paper_mammograms_negative": paper[3]})
    return pd.DataFrame(rows)


def classification_table(predictions: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """Table 2 and Fig. 3's AUCs: a row per magnification (seed means; AUC with a bootstrap 95 % interval) and the
    paper's percentages."""
    rows = []
    for magnification, group in predictions.groupby("magnification", sort=False):
        frames = [g.sort_values(["view_id", "row", "col"]) for _, g in group.groupby("seed")]
        row = {"magnification": magnification, **classification_row(frames, n_boot, seed)}
        paper = PAPER_CLASSIFICATION.get(magnification, (np.nan,) * 5)
        row.update({f"paper_{k}": v for k, v in zip(("tp", "fp", "tn", "fn", "total_error"), paper)})
        rows.append(row)
    table = pd.DataFrame(rows)
    order = sorted(table["magnification"], key=lambda m: -float(m[1:]))
    table = table.set_index("magnification").loc[order].reset_index()
    return table[[*CLASSIFICATION_COLUMNS, *[c for c in table if c.startswith("paper_")]]]


def heatmap_table(errors: pd.DataFrame) -> pd.DataFrame:
    """Table 3: each model's mean MSE over the training and validation mammograms (seed means of image means),
    at the heatmap's 32 x 32 resolution, and the paper's values; beside it ``mse_empty``, the MSE of an empty
    heatmap on the same mammograms: a model at that level has learnt nothing of where the findings are."""
    errors = errors[errors["split"].isin(["train", "val"])]
    means = errors.groupby(["model", "split", "seed"])[["mse", "mse_empty"]].mean()
    table = means.groupby(["model", "split"]).agg({"mse": ["mean", "std", "count"], "mse_empty": "mean"}).reset_index()
    table.columns = ["model", "split", "mse", "mse_seed_sd", "n_seeds", "mse_empty"]
    table["paper_mse"] = [PAPER_MSE.get((m, s), np.nan) for m, s in zip(table["model"], table["split"])]
    order = {BASELINE: 0, LOCAL: 1}
    return table.sort_values(["split", "model"], key=lambda c: c.map(order) if c.name == "model" else c,
                             ascending=[False, True]).reset_index(drop=True)


def saliency_table(shares: pd.DataFrame) -> pd.DataFrame:
    """The share of each map's mass inside the annotations of the positive test mammograms (mean over
    mammograms and seeds, and its spread over seeds)."""
    rows = []
    for name, column in (("saliency", "saliency_share"), ("heatmap", "heatmap_share"), ("uniform", "uniform_share")):
        per_seed = shares.groupby("seed")[column].mean()
        rows.append({"map": name, "share_inside": float(per_seed.mean()),
                     "share_seed_sd": float(per_seed.std()) if len(per_seed) > 1 else np.nan,
                     "n_mammograms": int(shares["view_id"].nunique()), "n_seeds": int(len(per_seed))})
    return pd.DataFrame(rows)


def write_study_table(table: pd.DataFrame, job) -> None:
    """A table as CSV (and Markdown when the rule names one)."""
    renderings = []
    if "markdown" in job.output:
        renderings.append((job.output.markdown, lambda t: t.to_markdown(index=False, floatfmt=".4g") + "\n"))
    write_table(table, job.output.csv, FLOAT_FORMAT, renderings)
