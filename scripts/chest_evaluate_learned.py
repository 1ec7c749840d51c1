"""Rule chest_evaluate_learned: register test pairs with a trained network and score them."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.chest import evaluate_learned  # noqa: E402

run(snakemake, evaluate_learned)
