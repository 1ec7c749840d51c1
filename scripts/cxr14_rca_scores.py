"""Rule cxr14_rca_scores: every shard's RCA scores in one table."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.cxr14 import rca_scores_table  # noqa: E402

run(snakemake, rca_scores_table)
