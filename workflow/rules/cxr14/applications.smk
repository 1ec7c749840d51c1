# ChestX-ray14 applications: per shard, multi-atlas segmentation and RCA with the
# atlas dataset's AC-RegNet; then quality control, the cohort and the SVM. The
# network rules run on a GPU when the job gets one and batch their pairs.


rule cxr14_segment:
    """Pre-align a shard like the atlases; 5 most similar atlases, AC-RegNet, majority vote."""
    input:
        manifest=rules.cxr14_manifest.output.manifest,
        raw_manifest=rules.cxr14_obtain.output.manifest,
        atlases=rules.cxr14_atlases.output.atlases,
        model=chest_model(CXR14["atlas_dataset"], "AC-RegNet"),
    output:
        segmentation=f"{RESULTS}/cxr14/shards/{{shard}}/segmentation.npz",
    wildcard_constraints:
        shard=r"\d+",
    params:
        step="medrepro.studies.chest.cxr14.steps:segment",
        seed=config["seed"],
        raw_dir=cxr14_raw_dir(),
        n_atlases=CXR14["n_atlases"],
        batch_size=CXR14["batch_size"],
        iterations=CHEST["prealign"]["iterations"],
        resolutions=CHEST["prealign"]["resolutions"],
        spatial_samples=CHEST["prealign"]["spatial_samples"],
    threads: 1  # elastix runs single-threaded (see chest_prealign); shards run in parallel
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/cxr14_segment/{{shard}}.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule cxr14_rca:
    """RCA: each segmentation as a single atlas, registered to every reference; best Dice."""
    input:
        segmentation=rules.cxr14_segment.output.segmentation,
        atlases=rules.cxr14_atlases.output.atlases,
        model=chest_model(CXR14["atlas_dataset"], "AC-RegNet"),
    output:
        scores=f"{RESULTS}/cxr14/shards/{{shard}}/rca.csv",
    wildcard_constraints:
        shard=r"\d+",
    params:
        step="medrepro.studies.chest.cxr14.steps:rca",
        batch_size=CXR14["batch_size"],
    threads: 1
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/cxr14_rca/{{shard}}.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule cxr14_rca_scores:
    """Every shard's RCA scores in one table."""
    input:
        scores=expand(f"{RESULTS}/cxr14/shards/{{shard}}/rca.csv", shard=cxr14_shards()),
    output:
        scores=f"{RESULTS}/cxr14/rca_scores.csv",
    params:
        step="medrepro.studies.chest.cxr14.steps:rca_scores_table",
    log:
        f"{RESULTS}/logs/cxr14_rca_scores.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule cxr14_rca_validation:
    """RCA-predicted against real Dice on held-out images of the atlas dataset."""
    input:
        atlases=rules.cxr14_atlases.output.atlases,
        model=chest_model(CXR14["atlas_dataset"], "AC-RegNet"),
    output:
        table=report(
            f"{RESULTS}/tables/rca_validation.csv",
            caption="../../report/cxr14/rca_validation.rst",
            category="ChestX-ray14 applications",
            subcategory="Tables",
        ),
        per_image=f"{RESULTS}/cxr14/rca_validation_per_image.csv",
    params:
        step="medrepro.studies.chest.cxr14.steps:rca_validation",
        dataset=CXR14["atlas_dataset"],
        n_atlases=CXR14["n_atlases"],
        batch_size=CXR14["batch_size"],
    threads: 1
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/cxr14_rca_validation.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule cxr14_cohort:
    """Quality control (RCA Dice > threshold) and the balanced cohort; also from the published files."""
    input:
        manifest=rules.cxr14_manifest.output.manifest,
        scores=rules.cxr14_rca_scores.output.scores,
        published_labels="resources/published/nih-cxr14-data-entry-2017-v2020.csv.gz",
        published_rca="resources/published/nih-cxr14-rca-dice-scores.csv",
    output:
        table=report(
            f"{RESULTS}/tables/cxr14_cohort.csv",
            caption="../../report/cxr14/cxr14_cohort.rst",
            category="ChestX-ray14 applications",
            subcategory="Tables",
        ),
        members=f"{RESULTS}/cxr14/cohort.csv",
    params:
        step="medrepro.studies.chest.cxr14.steps:cohort",
        seed=config["seed"],
        threshold=CXR14["rca_threshold"],
        published_threshold=CXR14["published_threshold"],
        source_name="synthetic" if CXR14["source"] == "synthetic" else "pipeline",
    log:
        f"{RESULTS}/logs/cxr14_cohort.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule cxr14_features:
    """Cohort masks as vectorised one-hot masks, autoencoder codes and cardiothoracic ratios."""
    input:
        members=rules.cxr14_cohort.output.members,
        segmentations=cxr14_segmentations(),
        autoencoder=chest_model(CXR14["atlas_dataset"], "autoencoder"),
    output:
        features=f"{RESULTS}/cxr14/features.npz",
    params:
        step="medrepro.studies.chest.cxr14.steps:features",
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/cxr14_features.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule cxr14_svm:
    """Cardiomegaly vs healthy: SVM on PCA and autoencoder codes (stratified k-fold), and CTR > 0.5."""
    input:
        features=rules.cxr14_features.output.features,
    output:
        table=report(
            f"{RESULTS}/tables/cardiomegaly_svm.csv",
            caption="../../report/cxr14/cardiomegaly_svm.rst",
            category="ChestX-ray14 applications",
            subcategory="Tables",
        ),
    params:
        step="medrepro.studies.chest.cxr14.steps:svm",
        seed=config["seed"],
        folds=CXR14["svm"]["folds"],
        pca_components=CXR14["svm"]["pca_components"],
        kernel=CXR14["svm"]["kernel"],
        C=CXR14["svm"]["C"],
        ctr_threshold=CXR14["ctr_threshold"],
    log:
        f"{RESULTS}/logs/cxr14_svm.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"
