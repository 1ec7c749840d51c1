"""Rule cxr14_synthesize: synthetic ChestX-ray14 stand-in in the real layout."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.cxr14 import synthesize  # noqa: E402

run(snakemake, synthesize)
