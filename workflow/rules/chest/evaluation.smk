# Chest X-ray evaluation: every method registers the same test pairs; Dice, HD
# and ASSD per pair and class (medpy 0.4.0 definitions). Learned methods are
# evaluated once per replicate seed, the others (no training) once.


rule chest_evaluate_learned:
    """Register the test pairs with a trained network (images only) and score the warped masks."""
    input:
        arrays=rules.chest_prealign.output.arrays,
        split=rules.chest_split.output.split,
        model=rules.chest_train_registration.output.model,
    output:
        scores=f"{RESULTS}/chest/{{dataset}}/eval/seed{{seed}}/{{method}}.csv",
        example=f"{RESULTS}/chest/{{dataset}}/eval/seed{{seed}}/{{method}}.example.npz",
    wildcard_constraints:
        dataset=one_of(CHEST_DATASETS),
        method=one_of(LEARNED_METHODS),
        seed=one_of(SEED_NAMES),
    params:
        step="medrepro.studies.chest.steps:evaluate_learned",
        method=lambda wc: wc.method,
        seed=lambda wc: int(wc.seed),
        example_pair=CHEST["figures"]["example_pair"],
    threads: 1  # CPU runs: two 1-thread jobs beat one 2-thread job; profiles raise it on GPU nodes
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/chest_evaluate_learned/{{dataset}}_{{method}}_seed{{seed}}.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule chest_evaluate_unregistered:
    """Scores after similarity pre-alignment only (the 'Unregistered' row)."""
    input:
        arrays=rules.chest_prealign.output.arrays,
        split=rules.chest_split.output.split,
    output:
        scores=f"{RESULTS}/chest/{{dataset}}/eval/Unregistered.csv",
        example=f"{RESULTS}/chest/{{dataset}}/eval/Unregistered.example.npz",
    wildcard_constraints:
        dataset=one_of(CHEST_DATASETS),
    params:
        step="medrepro.studies.chest.steps:evaluate_unregistered",
        method="Unregistered",
        example_pair=CHEST["figures"]["example_pair"],
    log:
        f"{RESULTS}/logs/chest_evaluate_unregistered/{{dataset}}.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule chest_evaluate_elastix:
    """The SimpleElastix B-spline baseline on every test pair, with the published parameters."""
    input:
        arrays=rules.chest_prealign.output.arrays,
        split=rules.chest_split.output.split,
    output:
        scores=f"{RESULTS}/chest/{{dataset}}/eval/SimpleElastix.csv",
        example=f"{RESULTS}/chest/{{dataset}}/eval/SimpleElastix.example.npz",
    wildcard_constraints:
        dataset=one_of(CHEST_DATASETS),
    params:
        step="medrepro.studies.chest.steps:evaluate_elastix",
        method="SimpleElastix",
        seed=config["seed"],
        example_pair=CHEST["figures"]["example_pair"],
        grid_spacing=CHEST["elastix_bspline"]["grid_spacing"],
        iterations=CHEST["elastix_bspline"]["iterations"],
        resolutions=CHEST["elastix_bspline"]["resolutions"],
        spatial_samples=CHEST["elastix_bspline"]["spatial_samples"],
        elastix_log_dir=lambda wc: f"{RESULTS}/logs/chest_evaluate_elastix/{wc.dataset}_elastix",
    # Single-threaded elastix (see chest_prealign); datasets run in parallel jobs.
    threads: 1
    log:
        f"{RESULTS}/logs/chest_evaluate_elastix/{{dataset}}.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"
