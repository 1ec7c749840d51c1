# The dual-view mammography registration study (Famouri et al.): its settings,
# paths and the inputs that depend on the configuration.

MAMMO = config["mammo_registration"]
MAMMO_DIR = f"{RESULTS}/mammo_registration"
MAMMO_DATASET = "CBIS-DDSM"
MAMMO_DATA = MAMMO["dataset"]
MAMMO_RAW = raw_dir(MAMMO_DATASET, MAMMO_DATA)
# Learned loss variants (trained per replicate seed) and the methods without training.
MAMMO_VARIANTS = list(MAMMO["registration"]["variants"])
MAMMO_UNTRAINED = ["unregistered", "prior"]
MAMMO_METHODS = [*MAMMO_UNTRAINED, "elastix", *MAMMO_VARIANTS]
MAMMO_PAPER_METHOD = "masked_mse_giou"
MAMMO_DETECTION = MAMMO["detection"]["steps"] > 0


def mammo_model(name, seed):
    return f"{MAMMO_DIR}/models/seed{seed}/{name}.pt"


def mammo_scores(method):
    """A method's per-pair file: every seed in one file for learned variants."""
    return f"{MAMMO_DIR}/eval/{method}.csv"


def mammo_all_scores():
    return {method: mammo_scores(method) for method in MAMMO_METHODS}


def mammo_matrices(method, seed=None):
    """A method's test-pair matrices; learned variants with `seed` (the config's seed by default)."""
    if method in MAMMO_VARIANTS:
        return f"{MAMMO_DIR}/eval/seed{config['seed'] if seed is None else seed}/{method}.npz"
    return f"{MAMMO_DIR}/eval/{method}.npz"


def mammo_detector_input(wildcards):
    """The lesion detector of the same seed, when detection pre-training is on."""
    return {"detector": mammo_model("detector", wildcards.seed)} if MAMMO_DETECTION else {}


def mammo_outputs():
    outputs = [
        *rules.mammo_registration_table.output,
        *rules.mammo_registration_wilcoxon.output,
        *rules.mammo_registration_claims.output,
        *rules.mammo_registration_figure_overlap_mask.output,
        *rules.mammo_registration_figure_training_curves.output,
        *rules.mammo_registration_figure_giou_histogram.output,
        *rules.mammo_registration_figure_examples.output,
        *[mammo_scores(method) for method in MAMMO_METHODS],
    ]
    if MAMMO_DATA["source"] == "synthetic":
        outputs += list(rules.mammo_registration_figure_synthetic.output)
    return outputs


check_raw_data({MAMMO_DATASET: MAMMO_DATA}, lambda d: f"{MAMMO_DIR}/raw_manifest.sha256")
