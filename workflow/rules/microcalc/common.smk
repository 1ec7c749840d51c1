# The microcalcification Detector / Segmentator study (Valvano et al.): its
# settings, paths and the inputs that depend on the configuration.

MICRO = config["microcalc"]
MICRO_DIR = f"{RESULTS}/microcalc"
MICRO_DATA = MICRO["dataset"]
MICRO_DATASET = "INbreast" if MICRO_DATA["format"] == "inbreast" else "calcification_masks"
MICRO_RAW = raw_dir(MICRO_DATASET, MICRO_DATA)
MICRO_NETWORKS = list(MICRO["networks"])
MICRO_VARIANTS = list(MICRO["variants"])
MICRO_DATABASE = f"{MICRO_DIR}/patches.sqlite"
# The whole-mammogram model needs both networks of a variant.
MICRO_SEGMENTS = {"detector", "segmentator"} <= set(MICRO_NETWORKS)


def micro_model(network, convolution, seed):
    return f"{MICRO_DIR}/models/seed{seed}/{network}_{convolution}.pt"


def micro_eval(name, seed):
    return f"{MICRO_DIR}/eval/seed{seed}/{name}"


def micro_table(name, caption):
    """A table's CSV, Markdown and LaTeX renderings, all in the report."""
    return {
        kind: report(f"{RESULTS}/tables/{name}.{suffix}", caption=f"../../report/microcalc/{caption}.rst",
                     category="Microcalcification segmentation", subcategory="Tables")
        for kind, suffix in (("csv", "csv"), ("markdown", "md"), ("latex", "tex"))
    }


def micro_figure(name, caption):
    return report(f"{RESULTS}/figures/{name}.png", caption=f"../../report/microcalc/{caption}.rst",
                  category="Microcalcification segmentation", subcategory="Figures")


def micro_predictions():
    return {f"predictions_{n}_{c}_seed{s}": micro_eval(f"{n}_{c}.csv", s)
            for n in MICRO_NETWORKS for c in MICRO_VARIANTS for s in SEED_NAMES}


def micro_scores():
    return {f"scores_{c}_seed{s}": micro_eval(f"images_{c}.csv", s) for c in MICRO_VARIANTS for s in SEED_NAMES}


def micro_outputs():
    outputs = [
        *rules.microcalc_patch_table.output,
        *rules.microcalc_claims.output,
        *rules.microcalc_figure_features.output,
        *rules.microcalc_figure_training_curves.output,
    ]
    if MICRO_SEGMENTS:
        outputs += [*rules.microcalc_images_table.output, *rules.microcalc_figure_segmentation.output]
    if MICRO_DATA["source"] == "synthetic":
        outputs += list(rules.microcalc_figure_synthetic.output)
    return outputs


check_raw_data({MICRO_DATASET: MICRO_DATA}, lambda d: f"{MICRO_DIR}/raw_manifest.sha256")
