# The ChestX-ray14 applications of AC-RegNet (Sec. 5.3): settings, shards and paths.
# They read the chest study's models, pre-aligned arrays and folds of the atlas dataset.

CXR14 = config["cxr14"]
CXR14_NAME = "ChestX-ray14"


def cxr14_shards():
    """Shard names; their number is fixed by the config, so a 112,120-image run is planned without the images."""
    n_shards = -(-CXR14["n_images"] // CXR14["shard_size"])
    return [f"{i:04d}" for i in range(n_shards)]


def cxr14_raw_dir():
    return raw_dir(CXR14_NAME, CXR14)


def cxr14_raw_input(wildcards):
    return raw_input(CXR14_NAME, CXR14)


def cxr14_atlas_file(name):
    """A file of the atlas dataset's registration study (models, pre-aligned arrays, folds)."""
    return f"{chest_dir(CXR14['atlas_dataset'])}/{name}"


def cxr14_segmentations():
    return expand(f"{RESULTS}/cxr14/shards/{{shard}}/segmentation.npz", shard=cxr14_shards())


def cxr14_outputs():
    return [
        *rules.cxr14_cohort.output,
        *rules.cxr14_svm.output,
        *rules.cxr14_rca_validation.output,
        *rules.cxr14_figure_rca.output,
        *rules.cxr14_figure_published_rca.output,
        *rules.cxr14_figure_rca_validation.output,
    ]


check_raw_data({CXR14_NAME: CXR14}, lambda d: f"{RESULTS}/cxr14/raw_manifest.sha256")
