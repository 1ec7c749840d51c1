"""Rule cxr14_cohort: quality control and the balanced cardiomegaly cohort."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.cxr14 import cohort  # noqa: E402

run(snakemake, cohort)
