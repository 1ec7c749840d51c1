"""Rule chest_registration_table: Table 1 as CSV, Markdown and LaTeX."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.chest import registration_table  # noqa: E402

run(snakemake, registration_table)
