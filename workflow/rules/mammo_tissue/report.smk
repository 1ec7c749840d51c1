# Tissue classifiers: Tables 1-3, the saliency's localisation, the claims and the
# paper's figures (Figs. 1, 3-6) with the synthetic DDSM's examples.


rule mammo_tissue_splits_table:
    """Table 1: tissue patches and CC mammograms with findings present / absent, per stage."""
    input:
        samples=rules.mammo_tissue_sample.output.samples,
        mammograms=rules.mammo_tissue_sample.output.mammograms,
    output:
        **tissue_table("mammo_tissue_splits", "splits"),
    params:
        step="medrepro.studies.mammo_tissue.steps:splits_table",
    log:
        f"{RESULTS}/logs/mammo_tissue_splits_table.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule mammo_tissue_classification_table:
    """Table 2 and Fig. 3's AUCs: TP, FP, TN, FN, total error and AUC (95% interval) per magnification."""
    input:
        **tissue_predictions(),
    output:
        **tissue_table("mammo_tissue_classification", "classification"),
    params:
        step="medrepro.studies.mammo_tissue.steps:classification_table",
        bootstrap=TISSUE["bootstrap"],
        seed=config["seed"],
    log:
        f"{RESULTS}/logs/mammo_tissue_classification_table.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule mammo_tissue_heatmap_table:
    """Table 3: the heatmap models' MSE on the training and validation mammograms."""
    input:
        **tissue_errors(),
    output:
        **tissue_table("mammo_heatmap_mse", "heatmap"),
    params:
        step="medrepro.studies.mammo_tissue.steps:heatmap_table",
    log:
        f"{RESULTS}/logs/mammo_tissue_heatmap_table.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule mammo_tissue_saliency_table:
    """The share of the saliency's mass inside the annotations, beside the heatmap's and a uniform map's."""
    input:
        **tissue_shares(),
    output:
        **tissue_table("mammo_tissue_saliency", "saliency"),
    params:
        step="medrepro.studies.mammo_tissue.steps:saliency_table",
    log:
        f"{RESULTS}/logs/mammo_tissue_saliency_table.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule mammo_tissue_claims:
    """The paper's claims: x0.5 best of the magnifications, its AUC above 0.9, local results against overfitting."""
    input:
        **tissue_predictions(),
        **tissue_errors(),
    output:
        csv=f"{TISSUE_DIR}/claims.csv",
    params:
        step="medrepro.studies.mammo_tissue.steps:claims",
    log:
        f"{RESULTS}/logs/mammo_tissue_claims.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule mammo_tissue_figure_synthetic:
    """The synthetic DDSM: each kind of case with its outlines, and a finding at three scales."""
    input:
        raw=raw_input(TISSUE_DATASET, TISSUE_DATA),
        manifest=rules.mammo_tissue_obtain.output.manifest,
    output:
        png=tissue_figure("mammo_tissue_synthetic", "figure_synthetic"),
    params:
        step="medrepro.studies.mammo_tissue.steps:figure_synthetic",
        raw_dir=lambda wc: TISSUE_RAW,
        examples=TISSUE["figures"]["examples"],
        constants=TISSUE["optical_density"]["constants"],
        clip=TISSUE["optical_density"]["clip"],
    log:
        f"{RESULTS}/logs/mammo_tissue_figure_synthetic.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule mammo_tissue_figure_roc:
    """Fig. 3: the ROC of each magnification's classifier on the held-out patches."""
    input:
        **tissue_predictions(),
    output:
        png=tissue_figure("mammo_tissue_roc", "figure_roc"),
    params:
        step="medrepro.studies.mammo_tissue.steps:figure_roc",
    log:
        f"{RESULTS}/logs/mammo_tissue_figure_roc.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule mammo_tissue_figure_aggregation:
    """Fig. 1: the x0.5 classifier's local results on a held-out mammogram."""
    input:
        images=rules.mammo_tissue_prepare.output.images,
        mammograms=rules.mammo_tissue_sample.output.mammograms,
        local=tissue_eval("local_results.npz", config["seed"]),
    output:
        png=tissue_figure("mammo_tissue_aggregation", "figure_aggregation"),
    params:
        step="medrepro.studies.mammo_tissue.steps:figure_aggregation",
        factor=TISSUE["aggregation"]["factor"],
        seed=config["seed"],
    log:
        f"{RESULTS}/logs/mammo_tissue_figure_aggregation.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule mammo_tissue_figure_heatmaps:
    """Fig. 4: heatmaps of both models on held-out mammograms, beside their targets."""
    input:
        images=rules.mammo_tissue_prepare.output.images,
        mammograms=rules.mammo_tissue_sample.output.mammograms,
        **{f"heatmaps_{m}": tissue_eval(f"heatmap_{m}.npz", config["seed"]) for m in TISSUE_HEATMAPS},
    output:
        png=tissue_figure("mammo_tissue_heatmaps", "figure_heatmaps"),
    params:
        step="medrepro.studies.mammo_tissue.steps:figure_heatmaps",
        models=TISSUE_HEATMAPS,
        examples=TISSUE["figures"]["examples"],
        input_size=TISSUE["heatmap"]["input_size"],
        grid=TISSUE["aggregation"]["grid"],
        target=TISSUE["heatmap"]["target"],
        blur_sigma=TISSUE["heatmap"]["blur_sigma"],
    log:
        f"{RESULTS}/logs/mammo_tissue_figure_heatmaps.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule mammo_tissue_figure_saliency:
    """Figs. 5 and 6: held-out tissue samples with their saliency, and a mammogram's full-scale saliency."""
    input:
        model=tissue_model(f"classifier_{TISSUE_AGGREGATED}", config["seed"]),
        images=rules.mammo_tissue_prepare.output.images,
        samples=rules.mammo_tissue_sample.output.samples,
        mammograms=rules.mammo_tissue_sample.output.mammograms,
        maps=tissue_eval("saliency.npz", config["seed"]),
    output:
        png=tissue_figure("mammo_tissue_saliency", "figure_saliency"),
    params:
        step="medrepro.studies.mammo_tissue.steps:figure_saliency",
        examples=TISSUE["figures"]["examples"],
        mode=TISSUE["saliency"]["mode"],
        fill=TISSUE["classifier"]["fill"],
        seed=config["seed"],
    log:
        f"{RESULTS}/logs/mammo_tissue_figure_saliency.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule mammo_tissue_figure_training_curves:
    """The classifiers' and heatmap models' losses over training."""
    input:
        **{f"classifier_{m}_seed{s}": f"{TISSUE_DIR}/models/seed{s}/classifier_{m}.losses.csv"
           for m in TISSUE_MAGNIFICATIONS for s in SEED_NAMES},
        **{f"heatmap_{m}_seed{s}": f"{TISSUE_DIR}/models/seed{s}/heatmap_{m}.losses.csv"
           for m in TISSUE_HEATMAPS for s in SEED_NAMES},
    output:
        png=tissue_figure("mammo_tissue_training_curves", "figure_training_curves"),
    params:
        step="medrepro.studies.mammo_tissue.steps:figure_training_curves",
    log:
        f"{RESULTS}/logs/mammo_tissue_figure_training_curves.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"
