# Brain registration networks, once per replicate seed: WSSAMNet and its
# no-attention ablation pre-trained on scans against affine copies of
# themselves, then fine-tuned follow-up to baseline; VoxelMorph trained on the
# same pairs. They train on a GPU when the job gets one, on the CPU otherwise,
# checkpoint as they go and resume when re-run.


rule brain_pretrain:
    """WSSAMNet (or its ablation) registering a scan to its affinely augmented copy (Sec. 4's pre-training)."""
    input:
        prepared=BRAIN_PREPARED,
    output:
        model=f"{BRAIN_DIR}/models/seed{{seed}}/{{method}}_pretrained.pt",
        losses=f"{BRAIN_DIR}/models/seed{{seed}}/{{method}}_pretrained.losses.csv",
    wildcard_constraints:
        method=one_of(BRAIN_PRETRAINED),
        seed=one_of(SEED_NAMES),
    params:
        step="medrepro.studies.brain.steps:pretrain",
        method=lambda wc: wc.method,
        seed=lambda wc: int(wc.seed),
        pretraining=BRAIN["pretraining"],
        checkpoint=lambda wc: f"{BRAIN_DIR}/checkpoints/seed{wc.seed}/{wc.method}_pretrained.ckpt",
        **brain_settings(),
    threads: 1  # CPU runs: two 1-thread jobs beat one 2-thread job; profiles raise it on GPU nodes
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/brain_pretrain/{{method}}_seed{{seed}}.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule brain_train:
    """Follow-up to baseline: VoxelMorph from scratch, WSSAMNet and its ablation from their pre-trained weights."""
    input:
        unpack(brain_pretrained_input),
        prepared=BRAIN_PREPARED,
    output:
        model=f"{BRAIN_DIR}/models/seed{{seed}}/{{method}}.pt",
        losses=f"{BRAIN_DIR}/models/seed{{seed}}/{{method}}.losses.csv",
    wildcard_constraints:
        method=one_of(BRAIN_LEARNED),
        seed=one_of(SEED_NAMES),
    params:
        step="medrepro.studies.brain.steps:train",
        method=lambda wc: wc.method,
        seed=lambda wc: int(wc.seed),
        training=BRAIN["training"],
        checkpoint=lambda wc: f"{BRAIN_DIR}/checkpoints/seed{wc.seed}/{wc.method}.ckpt",
        **brain_settings(),
    threads: 1
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/brain_train/{{method}}_seed{{seed}}.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"
