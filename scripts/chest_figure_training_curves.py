"""Rule chest_figure_training_curves: loss curves of every trained model."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.chest import figure_training_curves  # noqa: E402

run(snakemake, figure_training_curves)
