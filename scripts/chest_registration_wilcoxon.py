"""Rule chest_registration_wilcoxon: paired Wilcoxon tests with Bonferroni correction."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.chest import registration_wilcoxon  # noqa: E402

run(snakemake, registration_wilcoxon)
