# Brain registration study: the paper's Table 1 with Unregistered and the
# ablation, Wilcoxon tests, the claims, and the figures (the stand-in,
# registration examples, Jacobian maps, error box plots, training curves).


rule brain_registration_table:
    """Table 1: median and mean landmark errors, robustness, folding and seconds per pair, per method."""
    input:
        **brain_cases(),
    output:
        **brain_table("brain_registration", "registration"),
    params:
        step="medrepro.studies.brain.steps:registration_table",
    log:
        f"{RESULTS}/logs/brain_registration_table.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule brain_wilcoxon:
    """Paired Wilcoxon tests of the per-case median errors between every two methods, Bonferroni-corrected."""
    input:
        **brain_cases(),
    output:
        csv=report(f"{RESULTS}/tables/brain_registration_wilcoxon.csv", caption="../../report/brain/wilcoxon.rst",
                   category="Brain registration", subcategory="Tables"),
    params:
        step="medrepro.studies.brain.steps:wilcoxon",
    log:
        f"{RESULTS}/logs/brain_wilcoxon.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule brain_claims:
    """The paper's claims over the seeds: every method registers; WSSAMNet's median error lowest; robustness; speed."""
    input:
        **brain_cases(),
    output:
        csv=f"{BRAIN_DIR}/claims.csv",
    params:
        step="medrepro.studies.brain.steps:claims",
    log:
        f"{RESULTS}/logs/brain_claims.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule brain_figure_synthetic:
    """The synthetic BraTS-Reg: baseline and follow-up slices of a case with its landmarks."""
    input:
        raw=raw_input(BRAIN_DATASET, BRAIN_DATA),
        manifest=rules.brain_obtain.output.manifest,
    output:
        png=brain_figure("brain_synthetic", "figure_synthetic"),
    params:
        step="medrepro.studies.brain.steps:figure_synthetic",
        raw_dir=lambda wc: BRAIN_RAW,
    log:
        f"{RESULTS}/logs/brain_figure_synthetic.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule brain_figure_examples:
    """Registration examples (axial and coronal: fixed, moving, warped, differences, landmarks) and Jacobian maps."""
    input:
        **{f"example_{m}": brain_eval(m, config["seed"], "example") for m in BRAIN_METHODS},
    output:
        examples=brain_figure("brain_examples", "figure_examples"),
        jacobians=brain_figure("brain_jacobians", "figure_jacobians"),
    params:
        step="medrepro.studies.brain.steps:figure_examples",
    log:
        f"{RESULTS}/logs/brain_figure_examples.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule brain_figure_errors:
    """Landmark errors after registration per method (box plots), with the errors before."""
    input:
        **{f"errors_{m}": f"{BRAIN_DIR}/eval/{m}.csv" for m in BRAIN_METHODS},
    output:
        png=brain_figure("brain_landmark_errors", "figure_errors"),
    params:
        step="medrepro.studies.brain.steps:figure_errors",
    log:
        f"{RESULTS}/logs/brain_figure_errors.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule brain_figure_training_curves:
    """Training curves of the learned methods: pre-training and fine-tuning losses, every seed."""
    input:
        **{f"losses_{m}_seed{s}": brain_model(m, s).replace(".pt", ".losses.csv")
           for m in BRAIN_LEARNED for s in SEED_NAMES},
        **{f"losses_{m}_pretrained_seed{s}": brain_model(m, s, "pretrain").replace(".pt", ".losses.csv")
           for m in BRAIN_PRETRAINED for s in SEED_NAMES},
    output:
        png=brain_figure("brain_training_curves", "figure_training_curves"),
    params:
        step="medrepro.studies.brain.steps:figure_training_curves",
    log:
        f"{RESULTS}/logs/brain_figure_training_curves.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"
