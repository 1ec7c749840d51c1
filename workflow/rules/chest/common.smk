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
    """The anatomy autoencoder trained with the same replicate seed as the network."""
    if wildcards.method in AE_METHODS:
        return rules.chest_train_autoencoder.output.model.format(dataset=wildcards.dataset, seed=wildcards.seed)
    return []


def chest_model(dataset, name, seed=None):
    """A trained model of `dataset` (a registration method or "autoencoder"); the config's seed by default."""
    return f"{chest_dir(dataset)}/models/seed{config['seed'] if seed is None else seed}/{name}.pt"


def chest_eval_file(dataset, method, seed, suffix="csv"):
    """Scores (or the example pair) of one method: one file per seed for learned methods, one in all for the rest."""
    folder = f"eval/seed{seed}" if method in LEARNED_METHODS else "eval"
    return f"{chest_dir(dataset)}/{folder}/{method}.{suffix}"


def chest_eval_scores():
    """Every method's scores, keyed 'Dataset/Method' (run once) or 'Dataset/Method/seed<N>' (per seed)."""
    scores = {}
    for d in CHEST_DATASETS:
        for m in CHEST_METHODS:
            if m in LEARNED_METHODS:
                scores.update({f"{d}/{m}/seed{s}": chest_eval_file(d, m, s) for s in SEEDS})
            else:
                scores[f"{d}/{m}"] = chest_eval_file(d, m, None)
    return scores


def chest_examples():
    """The example pair as registered by every method; learned methods with the config's seed."""
    return {
        f"{d}/{m}": chest_eval_file(d, m, config["seed"], "example.npz") for d in CHEST_DATASETS for m in CHEST_METHODS
    }


def chest_loss_logs():
    """Loss logs of every trained network, keyed 'Dataset/Method/seed<N>'."""
    names = [*LEARNED_METHODS, "autoencoder"]
    return {
        f"{d}/{m}/seed{s}": f"{chest_dir(d)}/models/seed{s}/{m}.losses.csv"
        for d in CHEST_DATASETS
        for m in names
        for s in SEEDS
    }


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
        *rules.chest_claims.output,
    ]
    if chest_datasets_with_source("synthetic"):
        outputs += list(rules.chest_figure_synthetic.output)
    return outputs


check_raw_data(CHEST["datasets"], lambda d: f"{chest_dir(d)}/raw_manifest.sha256")
