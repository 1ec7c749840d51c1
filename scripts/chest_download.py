"""Rule chest_download: fetch an open NLM dataset with checksums."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.chest import download  # noqa: E402

run(snakemake, download)
