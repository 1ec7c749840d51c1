# Microcalcification evaluation, per seed: each network on the stored test
# patches (Table 1), and the whole-mammogram model of each convolution variant
# on the test images (beyond the paper's patch-level table).


rule microcalc_evaluate_patches:
    """P(positive) of every test patch."""
    input:
        model=lambda wc: micro_model(wc.network, wc.convolution, wc.seed),
        database=MICRO_DATABASE,
    output:
        predictions=f"{MICRO_DIR}/eval/seed{{seed}}/{{network}}_{{convolution}}.csv",
    wildcard_constraints:
        network=one_of(MICRO_NETWORKS),
        convolution=one_of(MICRO_VARIANTS),
        seed=one_of(SEED_NAMES),
    params:
        step="medrepro.studies.microcalc.steps:evaluate_patches",
        network=lambda wc: wc.network,
        convolution=lambda wc: wc.convolution,
        seed=lambda wc: int(wc.seed),
    threads: 1
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/microcalc_evaluate_patches/{{network}}_{{convolution}}_seed{{seed}}.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule microcalc_segment:
    """The Detector over overlapping windows, the Segmentator on every pixel of the candidates, calcifications and clusters."""
    input:
        raw=raw_input(MICRO_DATASET, MICRO_DATA),
        database=MICRO_DATABASE,
        detector=lambda wc: micro_model("detector", wc.convolution, wc.seed),
        segmentator=lambda wc: micro_model("segmentator", wc.convolution, wc.seed),
    output:
        scores=f"{MICRO_DIR}/eval/seed{{seed}}/images_{{convolution}}.csv",
        masks=f"{MICRO_DIR}/eval/seed{{seed}}/masks_{{convolution}}.npz",
    wildcard_constraints:
        convolution=one_of(MICRO_VARIANTS),
        seed=one_of(SEED_NAMES),
    params:
        step="medrepro.studies.microcalc.steps:segment",
        raw_dir=lambda wc: MICRO_RAW,
        dataset=section_without(MICRO_DATA, "source", "raw_dir", "synthetic"),
        pixel_mm=MICRO["pixel_mm"],
        convolution=lambda wc: wc.convolution,
        seed=lambda wc: int(wc.seed),
        segmentation=MICRO["segmentation"],
    threads: 1
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/microcalc_segment/{{convolution}}_seed{{seed}}.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"
