# Configuration validation and the path helpers shared by every study.

import re

from snakemake.utils import validate


validate(config, "../schemas/config.schema.yaml")

RESULTS = config["results_dir"]
config.setdefault("provenance_dir", f"{RESULTS}/provenance")
CHEST = config["chest"]
CHEST_DATASETS = list(CHEST["datasets"])
LEARNED_METHODS = list(CHEST["registration"]["methods"])
CHEST_METHODS = ["Unregistered", "SimpleElastix"] + LEARNED_METHODS
# Methods whose loss needs the anatomy autoencoder.
AE_METHODS = {"AE-RegNet", "AC-RegNet"}


def one_of(names):
    """A wildcard constraint matching exactly the given names (never matches when empty)."""
    return "|".join(re.escape(n) for n in names) if names else "(?!x)x"


def chest_datasets_with_source(source):
    return [d for d, ds in CHEST["datasets"].items() if ds["source"] == source]


def chest_raw_dir(dataset):
    """Native files: a user-placed copy for source 'verify', else generated or downloaded ones."""
    ds = CHEST["datasets"][dataset]
    return ds["raw_dir"] if ds["source"] == "verify" else f"{RESULTS}/raw/{dataset}"


def chest_raw_input(wildcards):
    """Raw files as a rule input only when a rule makes them; a user-placed copy is checked by
    the obtain step itself, which then says exactly what is missing and where to get it."""
    ds = CHEST["datasets"][wildcards.dataset]
    return [] if ds["source"] == "verify" else [chest_raw_dir(wildcards.dataset)]


def chest_dir(dataset):
    return f"{RESULTS}/chest/{dataset}"


wildcard_constraints:
    dataset=one_of(CHEST_DATASETS),
    shard=r"\d+",


# Chest X-ray study inputs that depend on the configuration.


def chest_autoencoder_input(wildcards):
    if wildcards.method in AE_METHODS:
        return rules.chest_train_autoencoder.output.model.format(dataset=wildcards.dataset)
    return []


def chest_eval_scores(method=None):
    methods = [method] if method else CHEST_METHODS
    return {f"{d}/{m}": f"{chest_dir(d)}/eval/{m}.csv" for d in CHEST_DATASETS for m in methods}


def chest_loss_logs():
    logs = {f"{d}/{m}": f"{chest_dir(d)}/models/{m}.losses.csv" for d in CHEST_DATASETS for m in LEARNED_METHODS}
    logs.update({f"{d}/autoencoder": f"{chest_dir(d)}/models/autoencoder.losses.csv" for d in CHEST_DATASETS})
    return logs


def chest_anatomy_dataset():
    """Fig. 2 uses JSRT masks (lungs and heart) when JSRT is configured."""
    return "JSRT" if "JSRT" in CHEST_DATASETS else CHEST_DATASETS[0]


def chest_registration_outputs():
    outputs = [
        *rules.chest_registration_table.output,
        *rules.chest_registration_wilcoxon.output,
        *rules.chest_figure_dice.output,
        *rules.chest_figure_examples.output,
        *rules.chest_figure_training_curves.output,
        *rules.chest_figure_anatomical_loss.output,
    ]
    if chest_datasets_with_source("synthetic"):
        outputs += list(rules.chest_figure_synthetic.output)
    return outputs


# ChestX-ray14 applications: planned only when the config has a cxr14 section.

CXR14 = config.get("cxr14")
CXR14_NAME = "ChestX-ray14"


def cxr14_shards():
    """Shard names; their number is fixed by the config, so a 112,120-image run is planned without the images."""
    if not CXR14:
        return []
    n_shards = -(-CXR14["n_images"] // CXR14["shard_size"])
    return [f"{i:04d}" for i in range(n_shards)]


def cxr14_raw_dir():
    return CXR14["raw_dir"] if CXR14["source"] == "verify" else f"{RESULTS}/raw/{CXR14_NAME}"


def cxr14_raw_input(wildcards):
    return [] if CXR14["source"] == "verify" else [cxr14_raw_dir()]


def cxr14_atlas_file(name):
    """A file of the atlas dataset's registration study (models, pre-aligned arrays, folds)."""
    return f"{chest_dir(CXR14['atlas_dataset'])}/{name}"


def cxr14_segmentations():
    return expand(f"{RESULTS}/cxr14/shards/{{shard}}/segmentation.npz", shard=cxr14_shards())


def cxr14_outputs():
    if not CXR14:
        return []
    return [
        *rules.cxr14_cohort.output,
        *rules.cxr14_svm.output,
        *rules.cxr14_rca_validation.output,
        *rules.cxr14_figure_rca.output,
        *rules.cxr14_figure_published_rca.output,
        *rules.cxr14_figure_rca_validation.output,
    ]
