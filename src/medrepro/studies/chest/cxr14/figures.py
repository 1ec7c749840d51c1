"""Figures of the ChestX-ray14 applications: RCA histograms (Fig. 4) and the RCA validation scatter."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from medrepro.report.figures import Histogram, draw_histograms, save_figure, show_image
from medrepro.studies.chest.figures import draw_label_contours

PASS_COLOUR = "#2ca02c"
FAIL_COLOUR = "#d62728"


def pick_examples(scores: pd.DataFrame, threshold: float, per_side: int) -> dict[str, float]:
    """Images spread over the score range: ``per_side`` below the threshold and ``per_side`` above.

    Taken at evenly spaced ranks on each side, so the examples show the range
    of qualities rather than only the extremes; image name -> score.
    """
    chosen = {}
    for side in (scores[scores["dice"] <= threshold], scores[scores["dice"] > threshold]):
        ranked = side.sort_values(["dice", "image"]).reset_index(drop=True)
        if ranked.empty:
            continue
        positions = np.unique(np.linspace(0, len(ranked) - 1, min(per_side, len(ranked))).round().astype(int))
        chosen.update({str(ranked.at[i, "image"]): float(ranked.at[i, "dice"]) for i in positions})
    return chosen


def _histogram(ax, dice: np.ndarray, threshold: float) -> None:
    dice = np.asarray(dice, dtype=float)
    low = min(float(dice.min(initial=threshold)), threshold)
    edges = np.linspace(max(0.0, low - 0.01), 1.0, 51)
    rejected, kept = dice[dice <= threshold], dice[dice > threshold]
    draw_histograms(ax, [
        Histogram(f"Dice <= {threshold:g}: {rejected.size:,} rejected", rejected, FAIL_COLOUR, filled=True, alpha=1.0),
        Histogram(f"Dice > {threshold:g}: {kept.size:,} kept", kept, PASS_COLOUR, filled=True, alpha=1.0),
    ], edges, xlabel="RCA-predicted Dice", ylabel="Images")
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1)
    ax.legend(fontsize=8, loc="upper left")


def plot_rca_histogram(dice: np.ndarray, threshold: float, out: str | Path, *, title: str,
                       examples: Sequence[Mapping] = ()) -> Path:
    """The RCA Dice histogram, coloured by the quality-control decision, with example masks beneath.

    Each example is a mapping with ``image`` (name), ``dice``, ``pixels``
    (pre-aligned image) and ``mask`` (label map drawn as contours).
    """
    examples = sorted(examples, key=lambda e: e["dice"])
    fig = Figure(figsize=(max(7.0, 1.7 * len(examples)), 6.5 if examples else 3.8), layout="constrained")
    if examples:
        top, bottom = fig.subfigures(2, 1, height_ratios=[1.3, 1])
    else:
        top, bottom = fig, None
    _histogram(top.subplots(), dice, threshold)
    top.suptitle(title)
    if bottom is not None:
        for ax, example in zip(np.atleast_1d(bottom.subplots(1, len(examples))), examples):
            show_image(ax, example["pixels"])
            draw_label_contours(ax, example["mask"], linewidths=0.9)
            colour = PASS_COLOUR if example["dice"] > threshold else FAIL_COLOUR
            ax.set_title(f"{example['image']}\nRCA Dice {example['dice']:.3f}", fontsize=7, color=colour)
    return save_figure(fig, out)


def plot_rca_validation(per_image: pd.DataFrame, threshold: float, out: str | Path) -> Path:
    """Real against RCA-predicted Dice on held-out images with ground truth, with the identity line."""
    fig = Figure(figsize=(5, 5), layout="constrained")
    ax = fig.subplots()
    real, predicted = per_image["real_dice"].to_numpy(float), per_image["rca_dice"].to_numpy(float)
    ax.scatter(real, predicted, s=18, color="#1f77b4", edgecolor="white", linewidth=0.5)
    low = float(np.nanmin(np.concatenate([real, predicted, [threshold]]))) - 0.02
    ax.plot([low, 1], [low, 1], color="grey", linewidth=1, label="identity")
    ax.axhline(threshold, color="black", linestyle="--", linewidth=1, label=f"QC threshold {threshold:g}")
    ax.set_xlim(low, 1)
    ax.set_ylim(low, 1)
    ax.set_xlabel("Real Dice (against ground truth)")
    ax.set_ylabel("RCA-predicted Dice")
    r = np.corrcoef(real, predicted)[0, 1] if len(real) > 2 and real.std() > 0 and predicted.std() > 0 else np.nan
    mae = float(np.mean(np.abs(predicted - real))) if len(real) else np.nan
    ax.set_title(f"RCA validation, {len(real)} held-out images\nPearson r = {r:.2f}, MAE = {mae:.3f}")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return save_figure(fig, out)
