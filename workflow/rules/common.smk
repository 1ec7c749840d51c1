# What every study uses: the config's validation, which studies run, the results
# paths and where a dataset's native files are. Nothing here knows a study: they are
# listed in workflow/studies.yaml.

import re
import sys

import yaml

from medrepro.provenance import pinning
from medrepro.report.claims import replicate_seeds
from medrepro.pipeline.config_check import check_config
from medrepro.errors import ConfigError, MedreproError

# Every study and the studies whose outputs it reads: workflow/studies.yaml.
with open(f"{workflow.basedir}/workflow/studies.yaml") as _studies:
    _STUDY_TABLE = yaml.safe_load(_studies)
STUDIES = tuple(_STUDY_TABLE)
STUDY_NEEDS = {study: tuple(entry["needs"]) for study, entry in _STUDY_TABLE.items()}

# The schema check (filling in its defaults) and the checks it cannot express; a mistake stops the
# workflow with one line per problem naming the key, the config file that set it and what is allowed.
# config/config.yaml is read first, each --configfile is merged over it.
_USER_CONFIGS = list(workflow.overwrite_configfiles)
try:
    check_config(
        config,
        f"{workflow.basedir}/workflow/schemas/config.schema.yaml",
        config_files=[f for f in workflow.configfiles if f not in _USER_CONFIGS] + _USER_CONFIGS,
    )
except ConfigError as problem:
    sys.exit(str(problem))

ENABLED_STUDIES = list(config["studies"])
if not ENABLED_STUDIES:
    sys.exit(f"the config enables no study: list one or more of {', '.join(STUDIES)} under `studies:`")


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

# Learned methods train and evaluate once per replicate seed: the config's seed, then the next ones.
# Claims are judged over all of them.
SEEDS = replicate_seeds(config["seed"], config["replicates"])
SEED_NAMES = [str(s) for s in SEEDS]
# Each study with claims about its paper adds its claims file: rule claims gathers them.
STUDY_CLAIMS = {}


def enabled_claim_files():
    """The claims files of the enabled studies, by study (rule claims gathers them)."""
    return {study: STUDY_CLAIMS[study] for study in ENABLED_STUDIES if study in STUDY_CLAIMS}


def one_of(names):
    """A wildcard constraint matching exactly the given names (never matches when empty)."""
    return "|".join(re.escape(n) for n in names) if names else "(?!x)x"


def section_without(section, *keys):
    """A config section as a training rule's params (whole: the step rejects a key it does not know), less the
    `keys` that other rules read: Snakemake reruns a job whose params changed, and adding a method to a
    section's list of methods must not retrain the others."""
    return {key: value for key, value in section.items() if key not in keys}


def raw_dir(name, settings):
    """Native files of dataset `name`: a user-placed copy for source 'verify', else generated or
    downloaded ones under results/raw/."""
    return settings["raw_dir"] if settings["source"] == "verify" else f"{RESULTS}/raw/{name}"


def raw_input(name, settings):
    """Raw files as a rule input only when a rule makes them; a user-placed copy is checked by the
    obtain step itself, which then says exactly what is missing and where to get it."""
    return [] if settings["source"] == "verify" else [raw_dir(name, settings)]


# Raw data against their pins (medrepro.provenance.pinning): a raw file changed, missing or added since it was
# pinned stops the workflow as it starts, before any job is planned, with one line naming the file,
# both digests and the command that re-pins it if the change is intended (no traceback: sys.exit).
PINS_DIR = pinning.pins_dir(config["provenance_dir"])


def check_raw_data(datasets, verified_copy):
    """Check each dataset's raw files against its pin: `datasets` maps names to their config sections,
    `verified_copy(name)` is the obtain step's verified copy of the pin (removed when re-pinning). Only
    the main process checks: a cluster job re-reads the Snakefile, and its data were checked at the start."""
    if not workflow.is_main_process:
        return
    for name, settings in datasets.items():
        directory = raw_dir(name, settings)
        pin = pinning.pin_path(name, directory, settings["source"], PINS_DIR)
        try:
            pinning.check_before_run(name, directory, pin, made_by_rule=bool(raw_input(name, settings)),
                                     verified_copy=verified_copy(name))
        except MedreproError as problem:
            sys.exit(str(problem))
