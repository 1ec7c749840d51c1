"""Rule cxr14_features: mask representations of the cohort."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.cxr14 import features  # noqa: E402

run(snakemake, features)
