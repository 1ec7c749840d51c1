# Tissue classifier data: the DDSM's native case folders -> verified copy -> base
# images cropped on the nipple -> splits by patient and tissue samples (Table 1).


if TISSUE_DATA["source"] == "synthetic":

    rule mammo_tissue_synthesize:
        """A synthetic DDSM in its native files (.ics, .LJPEG, .OVERLAY) from the shared 3-D breast model."""
        output:
            directory(TISSUE_RAW),
        params:
            step="medrepro.studies.mammo_tissue.steps:synthesize",
            seed=config["seed"],
            n_cases=TISSUE_DATA["synthetic"]["n_cases"],
            pixel_mm=TISSUE_DATA["synthetic"]["pixel_mm"],
            case_mix=TISSUE_DATA["synthetic"]["case_mix"],
            artefacts=TISSUE_DATA["synthetic"]["artefacts"],
            constants=TISSUE["optical_density"]["constants"],
        threads: 2  # cases are written side by side; the bytes do not depend on it
        log:
            f"{RESULTS}/logs/mammo_tissue_synthesize.log",
        conda:
            "../../../envs/data.yaml"
        script:
            "../../../scripts/step.py"


if TISSUE_DATA["source"] == "download":

    rule mammo_tissue_download:
        """The DDSM's case folders from its public FTP server."""
        output:
            directory(TISSUE_RAW),
        params:
            step="medrepro.studies.mammo_tissue.steps:download",
        log:
            f"{RESULTS}/logs/mammo_tissue_download.log",
        conda:
            "../../../envs/data.yaml"
        script:
            "../../../scripts/step.py"


rule mammo_tissue_obtain:
    """Check the case folders are complete and match their checksum manifest."""
    input:
        raw=raw_input(TISSUE_DATASET, TISSUE_DATA),
    output:
        manifest=f"{TISSUE_DIR}/raw_manifest.sha256",
    params:
        step="medrepro.studies.mammo_tissue.steps:obtain",
        source=TISSUE_DATA["source"],
        raw_dir=lambda wc: TISSUE_RAW,
    log:
        f"{RESULTS}/logs/mammo_tissue_obtain.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule mammo_tissue_prepare:
    """Every view in optical density, flipped to one orientation and cropped right-aligned on the nipple."""
    input:
        raw=raw_input(TISSUE_DATASET, TISSUE_DATA),
        manifest=rules.mammo_tissue_obtain.output.manifest,
    output:
        views=f"{TISSUE_DIR}/base/views.csv",
        annotations=f"{TISSUE_DIR}/base/annotations.csv",
        images=f"{TISSUE_DIR}/base/images.npz",
    params:
        step="medrepro.studies.mammo_tissue.steps:prepare",
        raw_dir=lambda wc: TISSUE_RAW,
        crop=TISSUE["base"]["crop"],
        constants=TISSUE["optical_density"]["constants"],
        clip=TISSUE["optical_density"]["clip"],
    threads: 2  # views are read side by side
    log:
        f"{RESULTS}/logs/mammo_tissue_prepare.log",
    conda:
        "../../../envs/torch.yaml"
    script:
        "../../../scripts/step.py"


rule mammo_tissue_sample:
    """Splits by patient, balanced held-out sets, positive and negative tissue samples and CC mammograms."""
    input:
        views=rules.mammo_tissue_prepare.output.views,
        annotations=rules.mammo_tissue_prepare.output.annotations,
        images=rules.mammo_tissue_prepare.output.images,
    output:
        samples=f"{TISSUE_DIR}/samples/samples.csv",
        mammograms=f"{TISSUE_DIR}/samples/mammograms.csv",
        splits=f"{TISSUE_DIR}/samples/splits.csv",
    params:
        step="medrepro.studies.mammo_tissue.steps:sample",
        seed=config["seed"],
        patch=TISSUE["samples"]["patch"],
        magnifications=TISSUE["magnifications"],
        negative_stride=TISSUE["samples"]["negative_stride"],
        max_positive_extent=TISSUE["samples"]["max_positive_extent"],
        held_out=TISSUE["samples"]["held_out"],
    log:
        f"{RESULTS}/logs/mammo_tissue_sample.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"
