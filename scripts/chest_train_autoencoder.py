"""Rule chest_train_autoencoder: train the anatomy autoencoder."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.steps import run  # noqa: E402
from medrepro.steps.chest import train_autoencoder  # noqa: E402

run(snakemake, train_autoencoder)
