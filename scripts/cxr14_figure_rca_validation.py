"""Rule cxr14_figure_rca_validation: RCA validation scatter."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.cxr14 import figure_rca_validation  # noqa: E402

run(snakemake, figure_rca_validation)
