"""Rule cxr14_atlases: atlas set, held-out images and pre-alignment reference."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.cxr14 import atlases  # noqa: E402

run(snakemake, atlases)
