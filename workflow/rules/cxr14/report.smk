# ChestX-ray14 applications: Fig. 4 (RCA histogram with examples), the published
# scores' histogram, and the RCA validation scatter.


rule cxr14_figure_rca:
    """Fig. 4: RCA-predicted Dice of this run, threshold, example masks below and above it."""
    input:
        scores=rules.cxr14_rca_scores.output.scores,
        segmentations=cxr14_segmentations(),
    output:
        png=report(
            f"{RESULTS}/figures/cxr14_rca_histogram.png",
            caption="../../report/cxr14/cxr14_rca_histogram.rst",
            category="ChestX-ray14 applications",
            subcategory="Figures",
        ),
    params:
        step="medrepro.studies.chest.cxr14.steps:figure_rca",
        threshold=CXR14["rca_threshold"],
        examples=CXR14["figures"]["examples"],
        source_name="synthetic" if CXR14["source"] == "synthetic" else "pipeline",
    log:
        f"{RESULTS}/logs/cxr14_figure_rca.log",
    conda:
        "../../../envs/report.yaml"
    script:
        "../../../scripts/step.py"


rule cxr14_figure_published_rca:
    """The authors' published RCA scores for all 112,120 images, with the threshold."""
    input:
        published_rca="resources/published/nih-cxr14-rca-dice-scores.csv",
    output:
        png=report(
            f"{RESULTS}/figures/cxr14_published_rca_histogram.png",
            caption="../../report/cxr14/cxr14_published_rca_histogram.rst",
            category="ChestX-ray14 applications",
            subcategory="Figures",
        ),
    params:
        step="medrepro.studies.chest.cxr14.steps:figure_published_rca",
        threshold=CXR14["published_threshold"],
    log:
        f"{RESULTS}/logs/cxr14_figure_published_rca.log",
    conda:
        "../../../envs/report.yaml"
    script:
        "../../../scripts/step.py"


rule cxr14_figure_rca_validation:
    """RCA-predicted against real Dice on held-out images with ground truth."""
    input:
        per_image=rules.cxr14_rca_validation.output.per_image,
    output:
        png=report(
            f"{RESULTS}/figures/cxr14_rca_validation.png",
            caption="../../report/cxr14/cxr14_rca_validation.rst",
            category="ChestX-ray14 applications",
            subcategory="Figures",
        ),
    params:
        step="medrepro.studies.chest.cxr14.steps:figure_rca_validation",
        threshold=CXR14["rca_threshold"],
    log:
        f"{RESULTS}/logs/cxr14_figure_rca_validation.log",
    conda:
        "../../../envs/report.yaml"
    script:
        "../../../scripts/step.py"
