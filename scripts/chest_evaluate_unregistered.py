"""Rule chest_evaluate_unregistered: score test pairs after pre-alignment only."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.chest import evaluate_unregistered  # noqa: E402

run(snakemake, evaluate_unregistered)
