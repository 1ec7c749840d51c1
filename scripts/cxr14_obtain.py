"""Rule cxr14_obtain: label table and images present and matching their checksums."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.cxr14 import obtain  # noqa: E402

run(snakemake, obtain)
