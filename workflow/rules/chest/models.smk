# Chest X-ray models: the anatomy autoencoder, then the four registration networks,
# once per replicate seed (`replicates:` in the config). Both train on a GPU when
# the job gets one, on the CPU otherwise, checkpoint as they go and resume from the
# last checkpoint when re-run after being killed.


rule chest_train_autoencoder:
    """Denoising autoencoder on one-hot lung/heart masks (32-d code)."""
    input:
        arrays=rules.chest_prealign.output.arrays,
        split=rules.chest_split.output.split,
    output:
        model=f"{RESULTS}/chest/{{dataset}}/models/seed{{seed}}/autoencoder.pt",
        losses=f"{RESULTS}/chest/{{dataset}}/models/seed{{seed}}/autoencoder.losses.csv",
    wildcard_constraints:
        dataset=one_of(CHEST_DATASETS),
        seed=one_of(SEED_NAMES),
    params:
        step="medrepro.studies.chest.steps:train_autoencoder",
        seed=lambda wc: int(wc.seed),
        training=CHEST["autoencoder"],
        checkpoint=lambda wc: f"{RESULTS}/chest/{wc.dataset}/checkpoints/seed{wc.seed}/autoencoder.ckpt",
    threads: 1  # CPU runs: two 1-thread jobs beat one 2-thread job; profiles raise it on GPU nodes
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/chest_train_autoencoder/{{dataset}}_seed{{seed}}.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule chest_train_registration:
    """RegNet / CE-RegNet / AE-RegNet / AC-RegNet with the loss of eq. 5."""
    input:
        arrays=rules.chest_prealign.output.arrays,
        split=rules.chest_split.output.split,
        autoencoder=chest_autoencoder_input,
    output:
        model=f"{RESULTS}/chest/{{dataset}}/models/seed{{seed}}/{{method}}.pt",
        losses=f"{RESULTS}/chest/{{dataset}}/models/seed{{seed}}/{{method}}.losses.csv",
    wildcard_constraints:
        dataset=one_of(CHEST_DATASETS),
        method=one_of(LEARNED_METHODS),
        seed=one_of(SEED_NAMES),
    params:
        step="medrepro.studies.chest.steps:train_registration",
        method=lambda wc: wc.method,
        seed=lambda wc: int(wc.seed),
        training=section_without(CHEST["registration"], "methods"),
        checkpoint=lambda wc: f"{RESULTS}/chest/{wc.dataset}/checkpoints/seed{wc.seed}/{wc.method}.ckpt",
    threads: 1  # CPU runs: two 1-thread jobs beat one 2-thread job; profiles raise it on GPU nodes
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/chest_train_registration/{{dataset}}_{{method}}_seed{{seed}}.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"
