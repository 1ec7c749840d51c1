"""Rule chest_prealign: elastix similarity pre-alignment and resize."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.chest import prealign  # noqa: E402

run(snakemake, prealign)
