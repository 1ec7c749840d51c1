# ChestX-ray14 data: native files -> verified copy -> manifest of shards, and the
# atlas set (training fold of the atlas dataset, with its pre-alignment reference).


rule cxr14_synthesize:
    """Synthetic stand-in in the real layout: images/*.png and Data_Entry_2017.csv."""
    output:
        directory(f"{RESULTS}/raw/{CXR14_NAME}"),
    params:
        step="medrepro.studies.chest.cxr14.steps:synthesize",
        seed=config["seed"],
        n_images=CXR14["n_images"],
        poor_fraction=CXR14["synthetic"]["poor_fraction"],
        enlarged_fraction=CXR14["synthetic"]["enlarged_fraction"],
        image_size=CXR14["synthetic"]["image_size"],
    log:
        f"{RESULTS}/logs/cxr14_synthesize.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule cxr14_obtain:
    """Check the label table and images are in place and match their checksum manifest."""
    input:
        raw=cxr14_raw_input,
    output:
        manifest=f"{RESULTS}/cxr14/raw_manifest.sha256",
    params:
        step="medrepro.studies.chest.cxr14.steps:obtain",
        dataset=CXR14_NAME,
        source=CXR14["source"],
        raw_dir=cxr14_raw_dir(),
    log:
        f"{RESULTS}/logs/cxr14_obtain.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule cxr14_manifest:
    """The images to process (first n of the label table) with their labels and shard."""
    input:
        raw_manifest=rules.cxr14_obtain.output.manifest,
    output:
        manifest=f"{RESULTS}/cxr14/manifest.csv",
    params:
        step="medrepro.studies.chest.cxr14.steps:manifest",
        raw_dir=cxr14_raw_dir(),
        n_images=CXR14["n_images"],
        shard_size=CXR14["shard_size"],
    log:
        f"{RESULTS}/logs/cxr14_manifest.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"


rule cxr14_atlases:
    """Atlases and RCA references (training fold), held-out images, and the pre-alignment reference."""
    input:
        arrays=cxr14_atlas_file("prealigned.npz"),
        split=cxr14_atlas_file("split.json"),
        converted=cxr14_atlas_file("converted"),
    output:
        atlases=f"{RESULTS}/cxr14/atlases.npz",
    params:
        step="medrepro.studies.chest.cxr14.steps:atlases",
        dataset=CXR14["atlas_dataset"],
        work_size=CHEST["prealign"]["work_size"],
    log:
        f"{RESULTS}/logs/cxr14_atlases.log",
    conda:
        "../../../envs/data.yaml"
    script:
        "../../../scripts/step.py"
