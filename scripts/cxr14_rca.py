"""Rule cxr14_rca: RCA-predicted Dice for one shard."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.cxr14 import rca  # noqa: E402

run(snakemake, rca)
