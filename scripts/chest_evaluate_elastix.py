"""Rule chest_evaluate_elastix: elastix B-spline baseline on the test pairs."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.chest import evaluate_elastix  # noqa: E402

run(snakemake, evaluate_elastix)
