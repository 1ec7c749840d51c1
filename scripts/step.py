"""Every rule's script: run the step the rule names in ``params.step`` (``module:function``).

The step function lives in the study's ``steps`` module, e.g.
``medrepro.studies.chest.steps:train_registration``; see medrepro.pipeline.runner.
"""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # the workflow's own package, installed or not

from medrepro.pipeline.runner import run_step  # noqa: E402

run_step(snakemake)
