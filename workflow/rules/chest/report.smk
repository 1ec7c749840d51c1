# Chest X-ray registration study: Table 1, the Wilcoxon tests and the figures.


rule chest_registration_table:
    """Table 1: mean (SD) over test pairs of the per-pair class means."""
    input:
        **chest_eval_scores(),
    output:
        csv=report(
            f"{RESULTS}/tables/chest_registration.csv",
            caption="../../report/chest/chest_registration_table.rst",
            category="Chest X-ray registration",
            subcategory="Tables",
        ),
        markdown=report(
            f"{RESULTS}/tables/chest_registration.md",
            caption="../../report/chest/chest_registration_table.rst",
            category="Chest X-ray registration",
            subcategory="Tables",
        ),
        latex=report(
            f"{RESULTS}/tables/chest_registration.tex",
            caption="../../report/chest/chest_registration_table.rst",
            category="Chest X-ray registration",
            subcategory="Tables",
        ),
    params:
        step="medrepro.studies.chest.steps:registration_table",
        datasets=CHEST_DATASETS,
        methods=CHEST_METHODS,
    log:
        f"{RESULTS}/logs/chest_registration_table.log",
    conda:
        "../../../envs/report.yaml"
    script:
        "../../../scripts/step.py"


rule chest_registration_wilcoxon:
    """Paired Wilcoxon signed-rank tests for every method pair, Bonferroni-corrected."""
    input:
        **chest_eval_scores(),
    output:
        csv=report(
            f"{RESULTS}/tables/chest_registration_wilcoxon.csv",
            caption="../../report/chest/chest_registration_wilcoxon.rst",
            category="Chest X-ray registration",
            subcategory="Tables",
        ),
    params:
        step="medrepro.studies.chest.steps:registration_wilcoxon",
        datasets=CHEST_DATASETS,
        methods=CHEST_METHODS,
    log:
        f"{RESULTS}/logs/chest_registration_wilcoxon.log",
    conda:
        "../../../envs/report.yaml"
    script:
        "../../../scripts/step.py"


rule chest_claims:
    """The paper's claims about Table 1, each judged over the replicate seeds and the test pairs."""
    input:
        **chest_eval_scores(),
    output:
        csv=f"{RESULTS}/chest/claims.csv",
    params:
        step="medrepro.studies.chest.steps:claims",
        datasets=CHEST_DATASETS,
        methods=CHEST_METHODS,
    log:
        f"{RESULTS}/logs/chest_claims.log",
    conda:
        "../../../envs/report.yaml"
    script:
        "../../../scripts/step.py"


rule chest_figure_dice:
    """Distribution of per-pair Dice for each method and dataset."""
    input:
        **chest_eval_scores(),
    output:
        png=report(
            f"{RESULTS}/figures/chest_dice_distributions.png",
            caption="../../report/chest/chest_dice_distributions.rst",
            category="Chest X-ray registration",
            subcategory="Figures",
        ),
    params:
        step="medrepro.studies.chest.steps:figure_dice",
        datasets=CHEST_DATASETS,
        methods=CHEST_METHODS,
    log:
        f"{RESULTS}/logs/chest_figure_dice.log",
    conda:
        "../../../envs/report.yaml"
    script:
        "../../../scripts/step.py"


rule chest_figure_examples:
    """Fig. 3: one test pair registered by every method."""
    input:
        **chest_examples(),
    output:
        png=report(
            f"{RESULTS}/figures/chest_registration_examples.png",
            caption="../../report/chest/chest_registration_examples.rst",
            category="Chest X-ray registration",
            subcategory="Figures",
        ),
    params:
        step="medrepro.studies.chest.steps:figure_examples",
        datasets=CHEST_DATASETS,
        methods=CHEST_METHODS,
    log:
        f"{RESULTS}/logs/chest_figure_examples.log",
    conda:
        "../../../envs/report.yaml"
    script:
        "../../../scripts/step.py"


rule chest_figure_training_curves:
    """Training and validation loss of the autoencoder and every registration network."""
    input:
        **chest_loss_logs(),
    output:
        png=report(
            f"{RESULTS}/figures/chest_training_curves.png",
            caption="../../report/chest/chest_training_curves.rst",
            category="Chest X-ray registration",
            subcategory="Figures",
        ),
    params:
        step="medrepro.studies.chest.steps:figure_training_curves",
    log:
        f"{RESULTS}/logs/chest_figure_training_curves.log",
    conda:
        "../../../envs/report.yaml"
    script:
        "../../../scripts/step.py"


rule chest_figure_anatomical_loss:
    """Fig. 2: L_ce vs L_ae on plausible (erosion) and implausible (block removal) masks."""
    input:
        arrays=f"{chest_dir(chest_anatomy_dataset())}/prealigned.npz",
        split=f"{chest_dir(chest_anatomy_dataset())}/split.json",
        autoencoder=chest_model(chest_anatomy_dataset(), "autoencoder"),
    output:
        csv=report(
            f"{RESULTS}/tables/chest_anatomical_loss.csv",
            caption="../../report/chest/chest_anatomical_loss.rst",
            category="Chest X-ray registration",
            subcategory="Tables",
        ),
        png=report(
            f"{RESULTS}/figures/chest_anatomical_loss.png",
            caption="../../report/chest/chest_anatomical_loss.rst",
            category="Chest X-ray registration",
            subcategory="Figures",
        ),
    params:
        step="medrepro.studies.chest.steps:figure_anatomical_loss",
        seed=config["seed"],
        n_masks=CHEST["figures"]["anatomical_loss"]["n_masks"],
        changed_pixels=CHEST["figures"]["anatomical_loss"]["changed_pixels"],
    log:
        f"{RESULTS}/logs/chest_figure_anatomical_loss.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule chest_figure_synthetic:
    """Synthetic stand-in radiographs beside their masks."""
    input:
        **{d: f"{RESULTS}/raw/{d}" for d in chest_datasets_with_source("synthetic")},
    output:
        png=report(
            f"{RESULTS}/figures/chest_synthetic_examples.png",
            caption="../../report/chest/chest_synthetic_examples.rst",
            category="Chest X-ray data",
        ),
    params:
        step="medrepro.studies.chest.steps:figure_synthetic",
    log:
        f"{RESULTS}/logs/chest_figure_synthetic.log",
    conda:
        "../../../envs/report.yaml"
    script:
        "../../../scripts/step.py"
