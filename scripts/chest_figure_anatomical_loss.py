"""Rule chest_figure_anatomical_loss: the anatomical loss experiment (Fig. 2)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.chest import figure_anatomical_loss  # noqa: E402

run(snakemake, figure_anatomical_loss)
