# Microcalcification study: the paper's Table 1 (errors per patch class), the
# whole-mammogram scores, the claims and the paper's figures (Figs. 1, 4-7) with
# the stand-in's examples and the training curves.


rule microcalc_patch_table:
    """Table 1: the error per class C1-C4 and the overall accuracy of each network and convolution."""
    input:
        **micro_predictions(),
    output:
        **micro_table("microcalc_patch_errors", "patch_errors"),
    params:
        step="medrepro.studies.microcalc.steps:patch_table",
    log:
        f"{RESULTS}/logs/microcalc_patch_table.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule microcalc_images_table:
    """Whole mammograms: pixel Dice, calcification sensitivity, false positives per image, clusters and seconds."""
    input:
        **micro_scores(),
    output:
        **micro_table("microcalc_images", "images"),
    params:
        step="medrepro.studies.microcalc.steps:images_table",
    log:
        f"{RESULTS}/logs/microcalc_images_table.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule microcalc_claims:
    """The paper's claims: same at least as accurate as valid; C3 the Detector's hardest class, C2 the Segmentator's."""
    input:
        **micro_predictions(),
    output:
        csv=f"{MICRO_DIR}/claims.csv",
    params:
        step="medrepro.studies.microcalc.steps:claims",
    log:
        f"{RESULTS}/logs/microcalc_claims.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule microcalc_figure_synthetic:
    """The synthetic INbreast: digital and film images with their painted masks, vessels and dust marked."""
    input:
        raw=raw_input(MICRO_DATASET, MICRO_DATA),
        manifest=rules.microcalc_obtain.output.manifest,
    output:
        png=micro_figure("microcalc_synthetic", "figure_synthetic"),
    params:
        step="medrepro.studies.microcalc.steps:figure_synthetic",
        raw_dir=lambda wc: MICRO_RAW,
        dataset=section_without(MICRO_DATA, "source", "raw_dir", "synthetic"),
        examples=MICRO["figures"]["examples"],
    log:
        f"{RESULTS}/logs/microcalc_figure_synthetic.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule microcalc_figure_features:
    """Fig. 4: t-SNE of the first fully connected layer's features; Figs. 5 and 6: the worst misclassified patches."""
    input:
        raw=raw_input(MICRO_DATASET, MICRO_DATA),
        database=MICRO_DATABASE,
        **{f"model_{n}": micro_model(n, MICRO_VARIANTS[0], config["seed"]) for n in MICRO_NETWORKS},
        **{k: v for k, v in micro_predictions().items() if k.endswith(f"_seed{config['seed']}")},
    output:
        tsne=micro_figure("microcalc_tsne", "figure_tsne"),
        detector=micro_figure("microcalc_worst_detector", "figure_worst"),
        segmentator=micro_figure("microcalc_worst_segmentator", "figure_worst"),
    params:
        step="medrepro.studies.microcalc.steps:figure_features",
        raw_dir=lambda wc: MICRO_RAW,
        dataset=section_without(MICRO_DATA, "source", "raw_dir", "synthetic"),
        pixel_mm=MICRO["pixel_mm"],
        convolution=MICRO_VARIANTS[0],
        seed=config["seed"],
        tsne_patches=MICRO["figures"]["tsne_patches"],
        perplexity=MICRO["figures"]["perplexity"],
        worst=MICRO["figures"]["worst"],
    log:
        f"{RESULTS}/logs/microcalc_figure_features.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule microcalc_figure_training_curves:
    """The networks' cross-entropy and accuracy per class over training."""
    input:
        **{f"{n}_{c}_seed{s}": f"{MICRO_DIR}/models/seed{s}/{n}_{c}.losses.csv"
           for n in MICRO_NETWORKS for c in MICRO_VARIANTS for s in SEED_NAMES},
    output:
        png=micro_figure("microcalc_training_curves", "figure_training_curves"),
    params:
        step="medrepro.studies.microcalc.steps:figure_training_curves",
    log:
        f"{RESULTS}/logs/microcalc_figure_training_curves.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule microcalc_figure_segmentation:
    """Fig. 1: a segmented region of a test image; Fig. 7: false detections at the breast border (both chosen by rule)."""
    input:
        raw=raw_input(MICRO_DATASET, MICRO_DATA),
        **{k: v for k, v in micro_scores().items() if k.endswith(f"_seed{config['seed']}")},
        **{f"masks_{c}": micro_eval(f"masks_{c}.npz", config["seed"]) for c in MICRO_VARIANTS},
    output:
        region=micro_figure("microcalc_segmented_region", "figure_segmented_region"),
        border=micro_figure("microcalc_border_failures", "figure_border_failures"),
    params:
        step="medrepro.studies.microcalc.steps:figure_segmentation",
        raw_dir=lambda wc: MICRO_RAW,
        dataset=section_without(MICRO_DATA, "source", "raw_dir", "synthetic"),
        pixel_mm=MICRO["pixel_mm"],
        segmentation=MICRO["segmentation"],
        seed=config["seed"],
    log:
        f"{RESULTS}/logs/microcalc_figure_segmentation.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"
