# Mammography models, once per replicate seed: the trunk fine-tuned as a lesion
# detector (the paper's Faster R-CNN stage), then the spatial transformer with
# each loss variant. Both train on a GPU when the job gets one, on the CPU
# otherwise, checkpoint as they go and resume when re-run after being killed.


rule mammo_registration_pretrain_detector:
    """The trunk fine-tuned as a single-stage lesion detector on the development views' boxes."""
    input:
        pairs=rules.mammo_registration_prepare.output.pairs,
        table=rules.mammo_registration_prepare.output.table,
    output:
        model=f"{MAMMO_DIR}/models/seed{{seed}}/detector.pt",
        losses=f"{MAMMO_DIR}/models/seed{{seed}}/detector.losses.csv",
    wildcard_constraints:
        seed=one_of(SEED_NAMES),
    params:
        step="medrepro.studies.mammo_registration.steps:pretrain_detector",
        seed=lambda wc: int(wc.seed),
        depth=MAMMO["network"]["depth"],
        trunk_weights=MAMMO["network"]["trunk_weights"],
        weights_dir=f"{MAMMO_DIR}/weights",
        training=MAMMO["detection"],
        checkpoint=lambda wc: f"{MAMMO_DIR}/checkpoints/seed{wc.seed}/detector.ckpt",
    threads: 1  # CPU runs: two 1-thread jobs beat one 2-thread job; profiles raise it on GPU nodes
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/mammo_registration_pretrain_detector/seed{{seed}}.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule mammo_registration_train:
    """The dual-view spatial transformer trained with one loss variant (the paper's: masked MSE + GIoU)."""
    input:
        unpack(mammo_detector_input),
        pairs=rules.mammo_registration_prepare.output.pairs,
    output:
        model=f"{MAMMO_DIR}/models/seed{{seed}}/{{variant}}.pt",
        losses=f"{MAMMO_DIR}/models/seed{{seed}}/{{variant}}.losses.csv",
    wildcard_constraints:
        variant=one_of(MAMMO_VARIANTS),
        seed=one_of(SEED_NAMES),
    params:
        step="medrepro.studies.mammo_registration.steps:train_registration",
        variant=lambda wc: wc.variant,
        seed=lambda wc: int(wc.seed),
        depth=MAMMO["network"]["depth"],
        head_init=MAMMO["network"]["head_init"],
        prior_angle_deg=MAMMO["network"]["prior_angle_deg"],
        trunk_weights=MAMMO["network"]["trunk_weights"],
        weights_dir=f"{MAMMO_DIR}/weights",
        training=section_without(MAMMO["registration"], "variants", "eval_batch_size"),
        checkpoint=lambda wc: f"{MAMMO_DIR}/checkpoints/seed{wc.seed}/{wc.variant}.ckpt",
    threads: 1  # CPU runs: two 1-thread jobs beat one 2-thread job; profiles raise it on GPU nodes
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/mammo_registration_train/{{variant}}_seed{{seed}}.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"
