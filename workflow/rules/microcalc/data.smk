# Microcalcification data: INbreast's native files (or a folder of images with
# masks) -> verified copy -> every image resampled to the working pixel size,
# split by image, its N x N patches of classes C1-C4 in one SQLite database.


if MICRO_DATA["source"] == "synthetic":

    rule microcalc_synthesize:
        """A synthetic INbreast in its native layout (DICOMs, INbreast.csv, XML plists) from the shared 3-D breast model."""
        output:
            directory(MICRO_RAW),
        params:
            step="medrepro.studies.microcalc.steps:synthesize",
            seed=config["seed"],
            **MICRO_DATA["synthetic"],
        threads: 2  # images are written side by side; the bytes do not depend on it
        log:
            f"{RESULTS}/logs/microcalc_synthesize.log",
        conda:
            "../../../envs/data.yaml"
        script:
            "../../../scripts/step.py"


rule microcalc_obtain:
    """Check the images and annotations are complete and match their checksum manifest."""
    input:
        raw=raw_input(MICRO_DATASET, MICRO_DATA),
    output:
        manifest=f"{MICRO_DIR}/raw_manifest.sha256",
    params:
        step="medrepro.studies.microcalc.steps:obtain",
        source=MICRO_DATA["source"],
        format=MICRO_DATA["format"],
        raw_dir=lambda wc: MICRO_RAW,
    log:
        f"{RESULTS}/logs/microcalc_obtain.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule microcalc_extract:
    """Images split by image and resampled; training candidates and the stored validation and test patches in SQLite."""
    input:
        raw=raw_input(MICRO_DATASET, MICRO_DATA),
        manifest=rules.microcalc_obtain.output.manifest,
    output:
        database=MICRO_DATABASE,
    params:
        step="medrepro.studies.microcalc.steps:extract",
        raw_dir=lambda wc: MICRO_RAW,
        dataset=section_without(MICRO_DATA, "source", "raw_dir", "synthetic"),
        pixel_mm=MICRO["pixel_mm"],
        split=MICRO["split"],
        patches=MICRO["patches"],
        seed=config["seed"],
    log:
        f"{RESULTS}/logs/microcalc_extract.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"
