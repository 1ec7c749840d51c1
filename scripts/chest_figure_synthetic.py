"""Rule chest_figure_synthetic: synthetic radiographs beside their masks."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.chest import figure_synthetic  # noqa: E402

run(snakemake, figure_synthetic)
