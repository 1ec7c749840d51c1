"""Rule chest_figure_dice: per-pair Dice distributions."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.chest import figure_dice  # noqa: E402

run(snakemake, figure_dice)
