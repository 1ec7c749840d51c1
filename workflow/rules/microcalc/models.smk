# Microcalcification networks, once per replicate seed: the Detector and the
# Segmentator, each with same and valid convolutions, trained on balanced
# minibatches drawn from the patch database. They train on a GPU when the job
# gets one, on the CPU otherwise, checkpoint as they go and resume when re-run.


rule microcalc_train:
    """The Detector (calcification in the patch) or the Segmentator (calcification at its centre), same or valid."""
    input:
        database=MICRO_DATABASE,
    output:
        model=f"{MICRO_DIR}/models/seed{{seed}}/{{network}}_{{convolution}}.pt",
        losses=f"{MICRO_DIR}/models/seed{{seed}}/{{network}}_{{convolution}}.losses.csv",
    wildcard_constraints:
        network=one_of(MICRO_NETWORKS),
        convolution=one_of(MICRO_VARIANTS),
        seed=one_of(SEED_NAMES),
    params:
        step="medrepro.studies.microcalc.steps:train",
        network=lambda wc: wc.network,
        convolution=lambda wc: wc.convolution,
        seed=lambda wc: int(wc.seed),
        widths=MICRO["network"]["widths"],
        hidden=MICRO["network"]["hidden"],
        dropout=MICRO["network"]["dropout"],
        augment=MICRO["network"]["augment"],
        training=MICRO["training"],
        checkpoint=lambda wc: f"{MICRO_DIR}/checkpoints/seed{wc.seed}/{wc.network}_{wc.convolution}.ckpt",
    threads: 1  # CPU runs: two 1-thread jobs beat one 2-thread job; profiles raise it on GPU nodes
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/microcalc_train/{{network}}_{{convolution}}_seed{{seed}}.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"
