"""Rule cxr14_manifest: images to process, with labels and shard."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.cxr14 import manifest  # noqa: E402

run(snakemake, manifest)
