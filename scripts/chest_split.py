"""Rule chest_split: train/validation/test folds and test pairs."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.chest import split  # noqa: E402

run(snakemake, split)
