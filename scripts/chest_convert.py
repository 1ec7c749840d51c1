"""Rule chest_convert: native files to the common form."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.chest import convert  # noqa: E402

run(snakemake, convert)
