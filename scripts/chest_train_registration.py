"""Rule chest_train_registration: train one registration network."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.chest import train_registration  # noqa: E402

run(snakemake, train_registration)
