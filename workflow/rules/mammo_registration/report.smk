# Mammography registration: the table of the variants, the Wilcoxon tests, the
# claims and the paper's figures (Figs. 2-5) with the synthetic pairs. They run in
# the torch environment: the study's box and warping helpers are torch code.


rule mammo_registration_table:
    """Overlap rate, GIoU loss, IoU, centre distance and masked MSE of every method on the test pairs."""
    input:
        **mammo_all_scores(),
    output:
        csv=report(
            f"{RESULTS}/tables/mammo_registration.csv",
            caption="../../report/mammo_registration/table.rst",
            category="Mammography registration",
            subcategory="Tables",
        ),
        markdown=report(
            f"{RESULTS}/tables/mammo_registration.md",
            caption="../../report/mammo_registration/table.rst",
            category="Mammography registration",
            subcategory="Tables",
        ),
        latex=report(
            f"{RESULTS}/tables/mammo_registration.tex",
            caption="../../report/mammo_registration/table.rst",
            category="Mammography registration",
            subcategory="Tables",
        ),
    params:
        step="medrepro.studies.mammo_registration.steps:registration_table",
    log:
        f"{RESULTS}/logs/mammo_registration_table.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule mammo_registration_wilcoxon:
    """Paired Wilcoxon tests of the per-pair GIoU loss and centre distance between every two methods."""
    input:
        **mammo_all_scores(),
    output:
        csv=report(
            f"{RESULTS}/tables/mammo_registration_wilcoxon.csv",
            caption="../../report/mammo_registration/wilcoxon.rst",
            category="Mammography registration",
            subcategory="Tables",
        ),
    params:
        step="medrepro.studies.mammo_registration.steps:registration_wilcoxon",
    log:
        f"{RESULTS}/logs/mammo_registration_wilcoxon.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule mammo_registration_claims:
    """The paper's claims (masked MSE + GIoU over the unregistered views and over masked MSE; masked over plain MSE)."""
    input:
        **mammo_all_scores(),
    output:
        csv=f"{MAMMO_DIR}/claims.csv",
    params:
        step="medrepro.studies.mammo_registration.steps:claims",
    log:
        f"{RESULTS}/logs/mammo_registration_claims.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule mammo_registration_figure_overlap_mask:
    """Fig. 2: the CC before and after registration and the overlap mask of the masked MSE."""
    input:
        pairs=rules.mammo_registration_prepare.output.pairs,
        matrices_unregistered=mammo_matrices("unregistered"),
        matrices_prior=mammo_matrices("prior"),
        **{f"matrices_{m}": mammo_matrices(m) for m in MAMMO_VARIANTS if m == MAMMO_PAPER_METHOD},
    output:
        png=report(
            f"{RESULTS}/figures/mammo_registration_overlap_mask.png",
            caption="../../report/mammo_registration/overlap_mask.rst",
            category="Mammography registration",
            subcategory="Figures",
        ),
    params:
        step="medrepro.studies.mammo_registration.steps:figure_overlap_mask",
    log:
        f"{RESULTS}/logs/mammo_registration_figure_overlap_mask.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule mammo_registration_figure_training_curves:
    """Fig. 3: MSE and GIoU loss over the epochs, training and validation, every variant and seed."""
    input:
        **{f"{v}_seed{s}": f"{MAMMO_DIR}/models/seed{s}/{v}.losses.csv" for v in MAMMO_VARIANTS for s in SEEDS},
    output:
        png=report(
            f"{RESULTS}/figures/mammo_registration_training_curves.png",
            caption="../../report/mammo_registration/training_curves.rst",
            category="Mammography registration",
            subcategory="Figures",
        ),
    params:
        step="medrepro.studies.mammo_registration.steps:figure_training_curves",
    log:
        f"{RESULTS}/logs/mammo_registration_figure_training_curves.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule mammo_registration_figure_giou_histogram:
    """Fig. 4: the GIoU loss on the test pairs, the paper's method against the other methods."""
    input:
        **mammo_all_scores(),
    output:
        png=report(
            f"{RESULTS}/figures/mammo_registration_giou_histogram.png",
            caption="../../report/mammo_registration/giou_histogram.rst",
            category="Mammography registration",
            subcategory="Figures",
        ),
    params:
        step="medrepro.studies.mammo_registration.steps:figure_giou_histogram",
    log:
        f"{RESULTS}/logs/mammo_registration_figure_giou_histogram.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule mammo_registration_figure_examples:
    """Fig. 5: registered pairs with their boxes, the best, median and worst by GIoU loss (config seed)."""
    input:
        pairs=rules.mammo_registration_prepare.output.pairs,
        scores=mammo_scores(MAMMO_PAPER_METHOD),
        **{f"matrices_{MAMMO_PAPER_METHOD}": mammo_matrices(MAMMO_PAPER_METHOD)},
    output:
        png=report(
            f"{RESULTS}/figures/mammo_registration_examples.png",
            caption="../../report/mammo_registration/examples.rst",
            category="Mammography registration",
            subcategory="Figures",
        ),
    params:
        step="medrepro.studies.mammo_registration.steps:figure_examples",
        method=MAMMO_PAPER_METHOD,
        seed=config["seed"],
        per_kind=MAMMO["figures"]["examples_per_kind"],
    log:
        f"{RESULTS}/logs/mammo_registration_figure_examples.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule mammo_registration_figure_synthetic:
    """The synthetic stand-in: CC/MLO pairs at the working size with their lesion boxes."""
    input:
        pairs=rules.mammo_registration_prepare.output.pairs,
    output:
        png=report(
            f"{RESULTS}/figures/mammo_registration_synthetic_pairs.png",
            caption="../../report/mammo_registration/synthetic_pairs.rst",
            category="Mammography registration",
            subcategory="Figures",
        ),
    params:
        step="medrepro.studies.mammo_registration.steps:figure_synthetic",
        n=MAMMO["figures"]["synthetic_pairs"],
    log:
        f"{RESULTS}/logs/mammo_registration_figure_synthetic.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"
