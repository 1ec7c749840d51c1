# The chest X-ray registration study (AC-RegNet, Table 1): its settings, paths and
# the inputs that depend on the configuration.

CHEST = config["chest"]
CHEST_DATASETS = list(CHEST["datasets"])
LEARNED_METHODS = list(CHEST["registration"]["methods"])
CHEST_METHODS = ["Unregistered", "SimpleElastix"] + LEARNED_METHODS
# Methods whose loss needs the anatomy autoencoder.
AE_METHODS = {"AE-RegNet", "AC-RegNet"}


def chest_datasets_with_source(source):
    return [d for d, ds in CHEST["datasets"].items() if ds["source"] == source]


def chest_raw_dir(dataset):
    return raw_dir(dataset, CHEST["datasets"][dataset])


def chest_raw_input(wildcards):
    return raw_input(wildcards.dataset, CHEST["datasets"][wildcards.dataset])


def chest_dir(dataset):
    return f"{RESULTS}/chest/{dataset}"


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


def chest_outputs():
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
