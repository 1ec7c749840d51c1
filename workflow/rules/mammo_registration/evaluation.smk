# Mammography evaluation: every method registers the same test pairs; per pair
# the MLO box, the registered CC box, IoU, GIoU loss, overlap, centre distance
# and masked MSE. Learned variants are evaluated once per seed, then gathered.


rule mammo_registration_evaluate_learned:
    """Register the test pairs with a trained network and score the carried lesion boxes."""
    input:
        pairs=rules.mammo_registration_prepare.output.pairs,
        model=rules.mammo_registration_train.output.model,
    output:
        scores=f"{MAMMO_DIR}/eval/seed{{seed}}/{{variant}}.csv",
        matrices=f"{MAMMO_DIR}/eval/seed{{seed}}/{{variant}}.npz",
    wildcard_constraints:
        variant=one_of(MAMMO_VARIANTS),
        seed=one_of(SEED_NAMES),
    params:
        step="medrepro.studies.mammo_registration.steps:evaluate_learned",
        method=lambda wc: wc.variant,
        seed=lambda wc: int(wc.seed),
        batch_size=MAMMO["registration"]["eval_batch_size"],
    threads: 1
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/mammo_registration_evaluate_learned/{{variant}}_seed{{seed}}.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule mammo_registration_gather_seeds:
    """A learned variant's per-pair scores of every seed in one file (with a seed column)."""
    input:
        scores=expand(f"{MAMMO_DIR}/eval/seed{{seed}}/{{{{variant}}}}.csv", seed=SEEDS),
    output:
        scores=f"{MAMMO_DIR}/eval/{{variant}}.csv",
    wildcard_constraints:
        variant=one_of(MAMMO_VARIANTS),
    params:
        step="medrepro.studies.mammo_registration.steps:gather_seeds",
    log:
        f"{RESULTS}/logs/mammo_registration_gather_seeds/{{variant}}.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule mammo_registration_evaluate_untrained:
    """The unregistered views (identity) and the network's 45-degree prior alone."""
    input:
        pairs=rules.mammo_registration_prepare.output.pairs,
    output:
        scores=f"{MAMMO_DIR}/eval/{{method}}.csv",
        matrices=f"{MAMMO_DIR}/eval/{{method}}.npz",
    wildcard_constraints:
        method=one_of(MAMMO_UNTRAINED),
    params:
        step="medrepro.studies.mammo_registration.steps:evaluate_untrained",
        method=lambda wc: wc.method,
        prior_angle_deg=MAMMO["network"]["prior_angle_deg"],
    log:
        f"{RESULTS}/logs/mammo_registration_evaluate_untrained/{{method}}.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule mammo_registration_evaluate_elastix:
    """The conventional baseline: elastix affine (mutual information, breast masks, from the prior) per test pair."""
    input:
        pairs=rules.mammo_registration_prepare.output.pairs,
    output:
        scores=f"{MAMMO_DIR}/eval/elastix.csv",
        matrices=f"{MAMMO_DIR}/eval/elastix.npz",
    params:
        step="medrepro.studies.mammo_registration.steps:evaluate_elastix",
        method="elastix",
        seed=config["seed"],
        iterations=MAMMO["elastix"]["iterations"],
        resolutions=MAMMO["elastix"]["resolutions"],
    threads: 1  # elastix's per-pair cost is small; one thread keeps it deterministic and leaves a core free
    log:
        f"{RESULTS}/logs/mammo_registration_evaluate_elastix.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"
