# Chest X-ray data: native files -> verified copy -> common form -> pre-aligned
# arrays -> folds. One job per dataset at each stage (elastix is loaded once).


rule chest_synthesize:
    """Synthetic stand-ins written in the dataset's native format."""
    output:
        directory(f"{RESULTS}/raw/{{dataset}}"),
    wildcard_constraints:
        dataset=one_of(chest_datasets_with_source("synthetic")),
    params:
        step="medrepro.studies.chest.steps:synthesize",
        dataset=lambda wc: wc.dataset,
        seed=config["seed"],
        n_subjects=lambda wc: CHEST["datasets"][wc.dataset]["synthetic"]["n_subjects"],
        image_size=lambda wc: CHEST["datasets"][wc.dataset]["synthetic"].get("image_size"),
    log:
        f"{RESULTS}/logs/chest_synthesize/{{dataset}}.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule chest_download:
    """The open NLM sets from their official location, with checksums."""
    output:
        directory(f"{RESULTS}/raw/{{dataset}}"),
    wildcard_constraints:
        dataset=one_of(chest_datasets_with_source("download")),
    params:
        step="medrepro.studies.chest.steps:download",
        dataset=lambda wc: wc.dataset,
    log:
        f"{RESULTS}/logs/chest_download/{{dataset}}.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule chest_obtain:
    """Check the native files are complete and match their checksum manifest."""
    input:
        raw=chest_raw_input,
    output:
        manifest=f"{RESULTS}/chest/{{dataset}}/raw_manifest.sha256",
    wildcard_constraints:
        dataset=one_of(CHEST_DATASETS),
    params:
        step="medrepro.studies.chest.steps:obtain",
        dataset=lambda wc: wc.dataset,
        source=lambda wc: CHEST["datasets"][wc.dataset]["source"],
        raw_dir=lambda wc: chest_raw_dir(wc.dataset),
    log:
        f"{RESULTS}/logs/chest_obtain/{{dataset}}.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule chest_convert:
    """Native files -> image + label map (1 right lung, 2 left lung, 3 heart) with spacing."""
    input:
        raw=chest_raw_input,
        manifest=rules.chest_obtain.output.manifest,
    output:
        converted=directory(f"{RESULTS}/chest/{{dataset}}/converted"),
    wildcard_constraints:
        dataset=one_of(CHEST_DATASETS),
    params:
        step="medrepro.studies.chest.steps:convert",
        dataset=lambda wc: wc.dataset,
        raw_dir=lambda wc: chest_raw_dir(wc.dataset),
        spacing_mm=lambda wc: CHEST["datasets"][wc.dataset]["spacing_mm"],
    log:
        f"{RESULTS}/logs/chest_convert/{{dataset}}.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule chest_prealign:
    """Pad to square, elastix similarity registration to a reference, resize."""
    input:
        converted=rules.chest_convert.output.converted,
    output:
        arrays=f"{RESULTS}/chest/{{dataset}}/prealigned.npz",
    wildcard_constraints:
        dataset=one_of(CHEST_DATASETS),
    params:
        step="medrepro.studies.chest.steps:prealign",
        seed=config["seed"],
        reference=lambda wc: CHEST["datasets"][wc.dataset]["reference"],
        work_size=CHEST["prealign"]["work_size"],
        image_size=CHEST["prealign"]["image_size"],
        iterations=CHEST["prealign"]["iterations"],
        resolutions=CHEST["prealign"]["resolutions"],
        spatial_samples=CHEST["prealign"]["spatial_samples"],
        elastix_log_dir=lambda wc: f"{RESULTS}/logs/chest_prealign/{wc.dataset}_elastix",
    # elastix runs single-threaded: multi-threaded runs crashed (SIGSEGV) on small pyramid levels,
    # and datasets are pre-aligned in parallel jobs instead.
    threads: 1
    log:
        f"{RESULTS}/logs/chest_prealign/{{dataset}}.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule chest_split:
    """Train/validation/test folds and 2 x N random test pairs."""
    input:
        arrays=rules.chest_prealign.output.arrays,
    output:
        split=f"{RESULTS}/chest/{{dataset}}/split.json",
    wildcard_constraints:
        dataset=one_of(CHEST_DATASETS),
    params:
        step="medrepro.studies.chest.steps:split",
        dataset=lambda wc: wc.dataset,
        seed=config["seed"],
        fractions=CHEST["split"]["fractions"],
        lists_dir=CHEST["split"]["lists_dir"],
        test_pairs_factor=CHEST["split"]["test_pairs_factor"],
    log:
        f"{RESULTS}/logs/chest_split/{{dataset}}.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"
