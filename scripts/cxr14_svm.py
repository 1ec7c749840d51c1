"""Rule cxr14_svm: cross-validated cardiomegaly classification."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.cxr14 import svm  # noqa: E402

run(snakemake, svm)
