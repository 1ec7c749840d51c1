"""Rule chest_synthesize: write synthetic stand-ins in the dataset's native format."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.chest import synthesize  # noqa: E402

run(snakemake, synthesize)
