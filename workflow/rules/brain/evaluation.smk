# Brain registration evaluation: each method registers the held-out pairs
# (follow-up to baseline) and is scored per landmark and per case; the
# validation cases get the challenge's submission files.


rule brain_evaluate_learned:
    """A learned method on every held-out pair: per-landmark errors, per-case scores and run times (one CPU thread,
    and the GPU where the job has one), submission files, the example views."""
    input:
        prepared=BRAIN_PREPARED,
        model=brain_model("{method}", "{seed}"),
    output:
        landmarks=f"{BRAIN_DIR}/eval/seed{{seed}}/{{method}}.csv",
        cases=f"{BRAIN_DIR}/eval/seed{{seed}}/{{method}}_cases.csv",
        example=f"{BRAIN_DIR}/eval/seed{{seed}}/{{method}}_example.npz",
        submission=directory(f"{BRAIN_DIR}/submission/seed{{seed}}/{{method}}"),
    wildcard_constraints:
        method=one_of(BRAIN_LEARNED),
        seed=one_of(SEED_NAMES),
    params:
        step="medrepro.studies.brain.steps:evaluate",
        method=lambda wc: wc.method,
        seed=lambda wc: int(wc.seed),
        median_kind=BRAIN["median"],
    threads: 1  # CPU run times are per pair on one thread, the same for every method
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/brain_evaluate/{{method}}_seed{{seed}}.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule brain_evaluate_classical:
    """Unregistered (the identity) or ANTs SyN on every held-out pair, scored as the learned methods are."""
    input:
        prepared=BRAIN_PREPARED,
    output:
        landmarks=f"{BRAIN_DIR}/eval/seed{{seed}}/{{method}}.csv",
        cases=f"{BRAIN_DIR}/eval/seed{{seed}}/{{method}}_cases.csv",
        example=f"{BRAIN_DIR}/eval/seed{{seed}}/{{method}}_example.npz",
        submission=directory(f"{BRAIN_DIR}/submission/seed{{seed}}/{{method}}"),
    wildcard_constraints:
        method=one_of([m for m in BRAIN_METHODS if m not in BRAIN_LEARNED]),
        seed=str(config["seed"]),
    params:
        step="medrepro.studies.brain.steps:evaluate",
        method=lambda wc: wc.method,
        seed=lambda wc: int(wc.seed),
        median_kind=BRAIN["median"],
        ants=BRAIN["ants"],
    threads: 1
    log:
        f"{RESULTS}/logs/brain_evaluate/{{method}}_seed{{seed}}.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule brain_landmark_errors:
    """A method's per-landmark errors before and after registration, every seed in one file."""
    input:
        lambda wc: [brain_eval(wc.method, s) for s in brain_seeds(wc.method)],
    output:
        csv=f"{BRAIN_DIR}/eval/{{method}}.csv",
    wildcard_constraints:
        method=one_of(BRAIN_METHODS),
    params:
        step="medrepro.studies.brain.steps:landmark_errors",
        seeds=lambda wc: [int(s) if wc.method in BRAIN_LEARNED else None for s in brain_seeds(wc.method)],
    log:
        f"{RESULTS}/logs/brain_landmark_errors/{{method}}.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"
