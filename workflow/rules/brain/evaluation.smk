# Brain registration evaluation: each method registers the held-out pairs
# (follow-up to baseline) and is scored per landmark and per case; the
# validation cases get the challenge's submission files.


def _evaluation_inputs(wildcards):
    inputs = {"prepared": BRAIN_PREPARED}
    if wildcards.method in BRAIN_LEARNED:
        inputs["model"] = brain_model(wildcards.method, wildcards.seed)
    return inputs


rule brain_evaluate:
    """A method on every held-out pair: per-landmark errors, per-case scores, submission files, the example views."""
    input:
        unpack(_evaluation_inputs),
    output:
        landmarks=f"{BRAIN_DIR}/eval/seed{{seed}}/{{method}}.csv",
        cases=f"{BRAIN_DIR}/eval/seed{{seed}}/{{method}}_cases.csv",
        example=f"{BRAIN_DIR}/eval/seed{{seed}}/{{method}}_example.npz",
        submission=directory(f"{BRAIN_DIR}/submission/seed{{seed}}/{{method}}"),
    wildcard_constraints:
        method=one_of(BRAIN_METHODS),
        seed=one_of(SEED_NAMES),
    params:
        step="medrepro.studies.brain.steps:evaluate",
        method=lambda wc: wc.method,
        seed=lambda wc: int(wc.seed),
        median_kind=BRAIN["median"],
        ants=BRAIN["ants"],
    threads: 1  # run times are per pair on one thread, the same for every method
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
