"""Rule cxr14_figure_published_rca: histogram of the published RCA scores."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.cxr14 import figure_published_rca  # noqa: E402

run(snakemake, figure_published_rca)
