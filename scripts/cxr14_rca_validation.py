"""Rule cxr14_rca_validation: RCA-predicted against real Dice on held-out images."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.cxr14 import rca_validation  # noqa: E402

run(snakemake, rca_validation)
