# Brain registration data: BraTS-Reg's native files (NIfTI scans, landmark
# CSVs) -> verified copy -> every case normalised and resampled to the working
# resolution, its landmarks carried along, the seeded split.


if BRAIN_DATA["source"] == "synthetic":

    rule brain_synthesize:
        """A synthetic BraTS-Reg in its native layout (NIfTI scans of four modalities, landmark CSVs) from brain phantoms."""
        output:
            directory(BRAIN_RAW),
        params:
            step="medrepro.studies.brain.steps:synthesize",
            seed=config["seed"],
            **BRAIN_DATA["synthetic"],
        threads: 2  # cases are written side by side; the bytes do not depend on it
        log:
            f"{RESULTS}/logs/brain_synthesize.log",
        conda:
            "../../../envs/data.yaml"
        script:
            "../../../scripts/step.py"


rule brain_obtain:
    """Check the cases are complete and match their checksum manifest."""
    input:
        raw=raw_input(BRAIN_DATASET, BRAIN_DATA),
    output:
        manifest=f"{BRAIN_DIR}/raw_manifest.sha256",
    params:
        step="medrepro.studies.brain.steps:obtain",
        source=BRAIN_DATA["source"],
        raw_dir=lambda wc: BRAIN_RAW,
    log:
        f"{RESULTS}/logs/brain_obtain.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule brain_prepare:
    """Cases normalised per modality and resampled to the working resolution, landmarks carried; the seeded split."""
    input:
        raw=raw_input(BRAIN_DATASET, BRAIN_DATA),
        manifest=rules.brain_obtain.output.manifest,
    output:
        directory(BRAIN_PREPARED),
    params:
        step="medrepro.studies.brain.steps:prepare",
        raw_dir=lambda wc: BRAIN_RAW,
        modalities=BRAIN["modalities"],
        voxel_mm=BRAIN["voxel_mm"],
        split=BRAIN["split"],
        seed=config["seed"],
    threads: 2  # cases are prepared side by side
    log:
        f"{RESULTS}/logs/brain_prepare.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"
