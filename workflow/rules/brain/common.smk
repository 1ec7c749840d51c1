# The WSSAMNet brain registration study (Almahfouz Nasser et al.): its
# settings, paths and the inputs that depend on the configuration.

BRAIN = config["brain"]
BRAIN_DIR = f"{RESULTS}/brain"
BRAIN_DATA = BRAIN["dataset"]
BRAIN_DATASET = "BraTS-Reg"
BRAIN_RAW = raw_dir(BRAIN_DATASET, BRAIN_DATA)
BRAIN_PREPARED = f"{BRAIN_DIR}/prepared"
BRAIN_METHODS = list(BRAIN["methods"])
# Learned methods train once per replicate seed; the others run once, with the config's seed.
BRAIN_LEARNED = [m for m in BRAIN_METHODS if m in ("voxelmorph", "wssamnet", "wssamnet_no_attention")]
BRAIN_PRETRAINED = [m for m in BRAIN_LEARNED if m != "voxelmorph"]


def brain_seeds(method):
    return SEED_NAMES if method in BRAIN_LEARNED else [str(config["seed"])]


def brain_model(method, seed, stage="finetune"):
    suffix = "_pretrained" if stage == "pretrain" else ""
    return f"{BRAIN_DIR}/models/seed{seed}/{method}{suffix}.pt"


def brain_pretrained_input(wildcards):
    """Fine-tuning starts from the pre-trained weights of the methods that have them."""
    if wildcards.method in BRAIN_PRETRAINED:
        return {"pretrained": brain_model(wildcards.method, wildcards.seed, "pretrain")}
    return {}


def brain_eval(method, seed, kind="landmarks"):
    suffix = {"landmarks": ".csv", "cases": "_cases.csv", "example": "_example.npz"}[kind]
    return f"{BRAIN_DIR}/eval/seed{seed}/{method}{suffix}"


def brain_cases():
    return {f"cases_{m}_seed{s}": brain_eval(m, s, "cases") for m in BRAIN_METHODS for s in brain_seeds(m)}


def brain_table(name, caption):
    """A table's CSV, Markdown and LaTeX renderings, all in the report."""
    return {
        kind: report(f"{RESULTS}/tables/{name}.{suffix}", caption=f"../../report/brain/{caption}.rst",
                     category="Brain registration", subcategory="Tables")
        for kind, suffix in (("csv", "csv"), ("markdown", "md"), ("latex", "tex"))
    }


def brain_figure(name, caption):
    return report(f"{RESULTS}/figures/{name}.png", caption=f"../../report/brain/{caption}.rst",
                  category="Brain registration", subcategory="Figures")


def brain_settings():
    """What the training and evaluation steps read of the study's section."""
    return dict(modalities=BRAIN["modalities"], voxel_mm=BRAIN["voxel_mm"], voxelmorph=BRAIN["voxelmorph"],
                wssamnet=BRAIN["wssamnet"])


def brain_outputs():
    outputs = [
        *rules.brain_registration_table.output,
        *rules.brain_wilcoxon.output,
        *rules.brain_claims.output,
        *rules.brain_figure_examples.output,
        *rules.brain_figure_errors.output,
        *[f"{BRAIN_DIR}/eval/{m}.csv" for m in BRAIN_METHODS],
    ]
    if BRAIN_LEARNED:
        outputs += list(rules.brain_figure_training_curves.output)
    if BRAIN_DATA["source"] == "synthetic":
        outputs += list(rules.brain_figure_synthetic.output)
    return outputs


check_raw_data({BRAIN_DATASET: BRAIN_DATA}, lambda d: f"{BRAIN_DIR}/raw_manifest.sha256")
