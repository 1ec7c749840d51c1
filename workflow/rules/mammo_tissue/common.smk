# The multi-scale mammography tissue classifier study (An et al.): its settings,
# paths and the inputs that depend on the configuration.

from medrepro.studies.mammo_tissue import magnification_label

TISSUE = config["mammo_tissue"]
TISSUE_DIR = f"{RESULTS}/mammo_tissue"
TISSUE_DATASET = "DDSM"
TISSUE_DATA = TISSUE["dataset"]
TISSUE_RAW = raw_dir(TISSUE_DATASET, TISSUE_DATA)
# One classifier per magnification, named as the paper names them (x0.5, x0.33, x0.25).
TISSUE_FACTORS = {magnification_label(f): f for f in TISSUE["magnifications"]}
TISSUE_MAGNIFICATIONS = list(TISSUE_FACTORS)
TISSUE_AGGREGATED = magnification_label(TISSUE["aggregation"]["factor"])
# Heatmap regression: the baseline, and the model with the aggregated local results (Fig. 2).
# (formatted, not an f-string: snakemake --lint takes a string starting with "+" for path composition)
TISSUE_HEATMAPS = {"baseline": "baseline", "local": "{} local results ({})".format("+", TISSUE_AGGREGATED)}


def tissue_model(name, seed):
    return f"{TISSUE_DIR}/models/seed{seed}/{name}.pt"


def tissue_eval(name, seed):
    return f"{TISSUE_DIR}/eval/seed{seed}/{name}"


def tissue_local_input(wildcards):
    """The aggregated local results of the same seed, for the heatmap model that reads them."""
    return {"local": tissue_eval("local_results.npz", wildcards.seed)} if wildcards.model == "local" else {}


def tissue_table(name, caption):
    """A table's CSV and Markdown rendering, both in the report."""
    return {
        kind: report(f"{RESULTS}/tables/{name}.{suffix}", caption=f"../../report/mammo_tissue/{caption}.rst",
                     category="Mammography tissue classifiers", subcategory="Tables")
        for kind, suffix in (("csv", "csv"), ("markdown", "md"))
    }


def tissue_figure(name, caption):
    return report(f"{RESULTS}/figures/{name}.png", caption=f"../../report/mammo_tissue/{caption}.rst",
                  category="Mammography tissue classifiers", subcategory="Figures")


def tissue_predictions():
    return {f"predictions_{m}_seed{s}": tissue_eval(f"classifier_{m}.csv", s)
            for m in TISSUE_MAGNIFICATIONS for s in SEED_NAMES}


def tissue_errors():
    return {f"errors_{m}_seed{s}": tissue_eval(f"heatmap_{m}.csv", s) for m in TISSUE_HEATMAPS for s in SEED_NAMES}


def tissue_shares():
    return {f"shares_seed{s}": tissue_eval("saliency.csv", s) for s in SEED_NAMES}


def tissue_outputs():
    outputs = [
        *rules.mammo_tissue_splits_table.output,
        *rules.mammo_tissue_classification_table.output,
        *rules.mammo_tissue_heatmap_table.output,
        *rules.mammo_tissue_saliency_table.output,
        *rules.mammo_tissue_claims.output,
        *rules.mammo_tissue_figure_roc.output,
        *rules.mammo_tissue_figure_aggregation.output,
        *rules.mammo_tissue_figure_heatmaps.output,
        *rules.mammo_tissue_figure_saliency.output,
        *rules.mammo_tissue_figure_training_curves.output,
    ]
    if TISSUE_DATA["source"] == "synthetic":
        outputs += list(rules.mammo_tissue_figure_synthetic.output)
    return outputs


check_raw_data({TISSUE_DATASET: TISSUE_DATA}, lambda d: f"{TISSUE_DIR}/raw_manifest.sha256")
