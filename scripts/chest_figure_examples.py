"""Rule chest_figure_examples: registration examples (Fig. 3)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.chest import figure_examples  # noqa: E402

run(snakemake, figure_examples)
