"""Rule cxr14_segment: pre-alignment and multi-atlas segmentation of one shard."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.cxr14 import segment  # noqa: E402

run(snakemake, segment)
