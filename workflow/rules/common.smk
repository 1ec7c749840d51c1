# What every study uses: the config's validation, which studies run, the results
# paths and where a dataset's native files are. Beyond the list of studies below,
# nothing here knows a study.

import re

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# Every study: its rules are workflow/rules/<study>/*.smk, its config section
# `<study>:` is checked by workflow/schemas/<study>.schema.yaml, and `studies:`
# in the config lists the ones that run.
STUDIES = ("chest", "cxr14")
# The studies whose rules a study needs (it reads their output files).
STUDY_NEEDS = {"chest": (), "cxr14": ("chest",)}

validate(config, "../schemas/config.schema.yaml")

ENABLED_STUDIES = list(config["studies"])
if not ENABLED_STUDIES:
    raise WorkflowError(
        f"the config enables no study: list one or more of {', '.join(STUDIES)} under `studies:`"
    )


def _with_needs(studies):
    needed = []
    for study in studies:
        for dependency in (*_with_needs(STUDY_NEEDS[study]), study):
            if dependency not in needed:
                needed.append(dependency)
    return needed


# Studies whose rules are loaded: the enabled ones and those they read from. Their
# sections always exist: config/config.yaml (loaded first, then merged with the
# --configfile given) has every study's section.
RULE_STUDIES = _with_needs(ENABLED_STUDIES)

# Each study's include block adds its outputs function: rule all gathers the enabled ones.
STUDY_OUTPUTS = {}

RESULTS = config["results_dir"]
config.setdefault("provenance_dir", f"{RESULTS}/provenance")


def one_of(names):
    """A wildcard constraint matching exactly the given names (never matches when empty)."""
    return "|".join(re.escape(n) for n in names) if names else "(?!x)x"


def raw_dir(name, settings):
    """Native files of dataset `name`: a user-placed copy for source 'verify', else generated or
    downloaded ones under results/raw/."""
    return settings["raw_dir"] if settings["source"] == "verify" else f"{RESULTS}/raw/{name}"


def raw_input(name, settings):
    """Raw files as a rule input only when a rule makes them; a user-placed copy is checked by the
    obtain step itself, which then says exactly what is missing and where to get it."""
    return [] if settings["source"] == "verify" else [raw_dir(name, settings)]
