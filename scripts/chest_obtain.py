"""Rule chest_obtain: verify the native files and their checksum manifest."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.chest import obtain  # noqa: E402

run(snakemake, obtain)
