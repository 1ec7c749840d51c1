# Tissue classifier evaluation, per seed: each classifier on the balanced test
# patches, each heatmap model on every mammogram it saw or was held out from, and
# the full-scale saliency of the positive test mammograms.


rule mammo_tissue_evaluate_classifier:
    """P(findings present) of every test patch at the classifier's magnification."""
    input:
        model=lambda wc: tissue_model(f"classifier_{wc.magnification}", wc.seed),
        images=rules.mammo_tissue_prepare.output.images,
        samples=rules.mammo_tissue_sample.output.samples,
    output:
        predictions=f"{TISSUE_DIR}/eval/seed{{seed}}/classifier_{{magnification}}.csv",
    wildcard_constraints:
        magnification=one_of(TISSUE_MAGNIFICATIONS),
        seed=one_of(SEED_NAMES),
    params:
        step="medrepro.studies.mammo_tissue.steps:evaluate_classifier",
        magnification=lambda wc: wc.magnification,
        seed=lambda wc: int(wc.seed),
        fill=TISSUE["classifier"]["fill"],
    threads: 1
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/mammo_tissue_evaluate_classifier/{{magnification}}_seed{{seed}}.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule mammo_tissue_evaluate_heatmap:
    """Each mammogram's MSE against its blurred annotation (Table 3), and the test mammograms' heatmaps."""
    input:
        unpack(tissue_local_input),
        model=lambda wc: tissue_model(f"heatmap_{wc.model}", wc.seed),
        images=rules.mammo_tissue_prepare.output.images,
        mammograms=rules.mammo_tissue_sample.output.mammograms,
    output:
        errors=f"{TISSUE_DIR}/eval/seed{{seed}}/heatmap_{{model}}.csv",
        heatmaps=f"{TISSUE_DIR}/eval/seed{{seed}}/heatmap_{{model}}.npz",
    wildcard_constraints:
        model=one_of(TISSUE_HEATMAPS),
        seed=one_of(SEED_NAMES),
    params:
        step="medrepro.studies.mammo_tissue.steps:evaluate_heatmap",
        model=lambda wc: TISSUE_HEATMAPS[wc.model],
        seed=lambda wc: int(wc.seed),
        input_size=TISSUE["heatmap"]["input_size"],
        grid=TISSUE["aggregation"]["grid"],
        target=TISSUE["heatmap"]["target"],
        blur_sigma=TISSUE["heatmap"]["blur_sigma"],
    threads: 1
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/mammo_tissue_evaluate_heatmap/{{model}}_seed{{seed}}.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule mammo_tissue_saliency:
    """Saliency of the x0.5 patches predicted positive inside the predicted heatmap, added at full scale."""
    input:
        model=lambda wc: tissue_model(f"classifier_{TISSUE_AGGREGATED}", wc.seed),
        heatmaps=lambda wc: tissue_eval("heatmap_local.npz", wc.seed),
        images=rules.mammo_tissue_prepare.output.images,
        mammograms=rules.mammo_tissue_sample.output.mammograms,
    output:
        shares=f"{TISSUE_DIR}/eval/seed{{seed}}/saliency.csv",
        maps=f"{TISSUE_DIR}/eval/seed{{seed}}/saliency.npz",
    wildcard_constraints:
        seed=one_of(SEED_NAMES),
    params:
        step="medrepro.studies.mammo_tissue.steps:saliency",
        seed=lambda wc: int(wc.seed),
        grid=TISSUE["aggregation"]["grid"],
        density=TISSUE["saliency"]["density"],
        mode=TISSUE["saliency"]["mode"],
        heatmap_threshold=TISSUE["saliency"]["heatmap_threshold"],
        fill=TISSUE["classifier"]["fill"],
    threads: 1
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/mammo_tissue_saliency/seed{{seed}}.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"
