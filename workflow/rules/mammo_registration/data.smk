# Mammography data: CBIS-DDSM's native files -> verified copy -> CC/MLO lesion
# pairs at the working size, with the training/validation/test split.


if MAMMO_DATA["source"] == "synthetic":

    rule mammo_registration_synthesize:
        """A synthetic CBIS-DDSM in the collection's native layout (DICOMs and the four case tables)."""
        output:
            directory(MAMMO_RAW),
        params:
            step="medrepro.studies.mammo_registration.steps:synthesize",
            seed=config["seed"],
            n_patients=MAMMO_DATA["synthetic"]["n_patients"],
            image_size=MAMMO_DATA["synthetic"]["image_size"],
            layout=MAMMO_DATA["synthetic"]["layout"],
            test_fraction=MAMMO_DATA["synthetic"]["test_fraction"],
        log:
            f"{RESULTS}/logs/mammo_registration_synthesize.log",
        conda:
            "../../../envs/data.yaml"
        script:
            "../../../scripts/step.py"


if MAMMO_DATA["source"] == "download":

    rule mammo_registration_download:
        """CBIS-DDSM from TCIA (NBIA REST API) into the older on-disk layout, and the four case tables."""
        output:
            directory(MAMMO_RAW),
        log:
            f"{RESULTS}/logs/mammo_registration_download.log",
        params:
            step="medrepro.studies.mammo_registration.steps:download",
        conda:
            "../../../envs/data.yaml"
        script:
            "../../../scripts/step.py"


rule mammo_registration_obtain:
    """Check the native files are complete and match their checksum manifest."""
    input:
        raw=raw_input(MAMMO_DATASET, MAMMO_DATA),
    output:
        manifest=f"{MAMMO_DIR}/raw_manifest.sha256",
    params:
        step="medrepro.studies.mammo_registration.steps:obtain",
        source=MAMMO_DATA["source"],
        raw_dir=lambda wc: MAMMO_RAW,
    log:
        f"{RESULTS}/logs/mammo_registration_obtain.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule mammo_registration_prepare:
    """CC/MLO lesion pairs: boxes from the ROI masks, views at the working size, breast regions, the split."""
    input:
        raw=raw_input(MAMMO_DATASET, MAMMO_DATA),
        manifest=rules.mammo_registration_obtain.output.manifest,
    output:
        pairs=f"{MAMMO_DIR}/pairs.npz",
        table=f"{MAMMO_DIR}/pairs.csv",
        summary=f"{MAMMO_DIR}/pairs.json",
    params:
        step="medrepro.studies.mammo_registration.steps:prepare",
        raw_dir=lambda wc: MAMMO_RAW,
        seed=config["seed"],
        longest_side=MAMMO["pairs"]["longest_side"],
        aspect=MAMMO["pairs"]["aspect"],
        pairing_rule=MAMMO["pairs"]["pairing_rule"],
        val_fraction=MAMMO["pairs"]["val_fraction"],
        mirror_side=MAMMO["pairs"]["mirror_side"],
        exclude_bad_masks=MAMMO["pairs"]["exclude_bad_masks"],
    log:
        f"{RESULTS}/logs/mammo_registration_prepare.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"
