# Tissue classifier models, once per replicate seed: a classifier per
# magnification, the x0.5 classifier's aggregated local results, and the heatmap
# regression models with and without them. They train on a GPU when the job gets
# one, on the CPU otherwise, checkpoint as they go and resume when re-run.


rule mammo_tissue_train_classifier:
    """A VGG-style tissue classifier at one magnification (findings present: BI-RADS >= 2)."""
    input:
        images=rules.mammo_tissue_prepare.output.images,
        samples=rules.mammo_tissue_sample.output.samples,
    output:
        model=f"{TISSUE_DIR}/models/seed{{seed}}/classifier_{{magnification}}.pt",
        losses=f"{TISSUE_DIR}/models/seed{{seed}}/classifier_{{magnification}}.losses.csv",
    wildcard_constraints:
        magnification=one_of(TISSUE_MAGNIFICATIONS),
        seed=one_of(SEED_NAMES),
    params:
        step="medrepro.studies.mammo_tissue.steps:train_classifier",
        seed=lambda wc: int(wc.seed),
        factor=lambda wc: TISSUE_FACTORS[wc.magnification],
        patch=TISSUE["samples"]["patch"],
        width=TISSUE["classifier"]["width"],
        hidden=TISSUE["classifier"]["hidden"],
        dropout=TISSUE["classifier"]["dropout"],
        positive_fraction=TISSUE["classifier"]["positive_fraction"],
        fill=TISSUE["classifier"]["fill"],
        augmentation=TISSUE["classifier"]["augmentation"],
        training=TISSUE["classifier"]["training"],
        checkpoint=lambda wc: f"{TISSUE_DIR}/checkpoints/seed{wc.seed}/classifier_{wc.magnification}.ckpt",
    threads: 1  # CPU runs: two 1-thread jobs beat one 2-thread job; profiles raise it on GPU nodes
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/mammo_tissue_train_classifier/{{magnification}}_seed{{seed}}.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule mammo_tissue_aggregate:
    """The x0.5 classifier evaluated on the 32 x 32 grid over every CC mammogram (the paper's Fig. 1)."""
    input:
        model=lambda wc: tissue_model(f"classifier_{TISSUE_AGGREGATED}", wc.seed),
        images=rules.mammo_tissue_prepare.output.images,
        mammograms=rules.mammo_tissue_sample.output.mammograms,
    output:
        local=f"{TISSUE_DIR}/eval/seed{{seed}}/local_results.npz",
    wildcard_constraints:
        seed=one_of(SEED_NAMES),
    params:
        step="medrepro.studies.mammo_tissue.steps:aggregate",
        grid=TISSUE["aggregation"]["grid"],
        fill=TISSUE["classifier"]["fill"],
    threads: 1
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/mammo_tissue_aggregate/seed{{seed}}.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule mammo_tissue_train_heatmap:
    """Heatmap regression on the downsampled CC mammograms: the baseline, or with the local results (Fig. 2)."""
    input:
        unpack(tissue_local_input),
        images=rules.mammo_tissue_prepare.output.images,
        mammograms=rules.mammo_tissue_sample.output.mammograms,
    output:
        model=f"{TISSUE_DIR}/models/seed{{seed}}/heatmap_{{model}}.pt",
        losses=f"{TISSUE_DIR}/models/seed{{seed}}/heatmap_{{model}}.losses.csv",
    wildcard_constraints:
        model=one_of(TISSUE_HEATMAPS),
        seed=one_of(SEED_NAMES),
    params:
        step="medrepro.studies.mammo_tissue.steps:train_heatmap",
        seed=lambda wc: int(wc.seed),
        input_size=TISSUE["heatmap"]["input_size"],
        grid=TISSUE["aggregation"]["grid"],
        target=TISSUE["heatmap"]["target"],
        blur_sigma=TISSUE["heatmap"]["blur_sigma"],
        width=TISSUE["heatmap"]["width"],
        flip=TISSUE["heatmap"]["flip"],
        training=TISSUE["heatmap"]["training"],
        checkpoint=lambda wc: f"{TISSUE_DIR}/checkpoints/seed{wc.seed}/heatmap_{wc.model}.ckpt",
    threads: 1
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/mammo_tissue_train_heatmap/{{model}}_seed{{seed}}.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"
